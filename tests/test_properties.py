"""Property-based tests of what users hand us: every generated input gives a valid result or the documented clean error.

Parsers and validators reachable from files, the command line, the page and gRPC: annotation, pair
and keypoint files; --set overrides and YAML configs; the page's JSON; serving requests. "Clean"
means the error type each documents (DataFormatError, ConfigError, RequestError with a 4xx status,
a gRPC status); any other exception is a bug Hypothesis has found.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pnr_tf.app.service import PageService
from pnr_tf.app.service import RequestError
from pnr_tf.app.service import parse_keypoints
from pnr_tf.config import Config
from pnr_tf.config import ConfigError
from pnr_tf.config import load_config
from pnr_tf.conventions import NUM_JOINTS
from pnr_tf.data.annotations import DataFormatError
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_keypoints_json
from pnr_tf.data.annotations import read_pairs

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# JSON-like values, with the awkward ones: huge and negative integers, floats of every kind, booleans, nesting.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**500), max_value=10**500), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)  # fmt: skip
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=20) | st.dictionaries(st.text(max_size=6), children, max_size=4),
                           max_leaves=60)  # fmt: skip
joint_lists = st.lists(st.one_of(st.integers(-3, 300), st.integers(), st.floats(), st.booleans(), st.text(max_size=3)), min_size=16, max_size=20)
names = st.text(st.characters(blacklist_characters=":\n\r", blacklist_categories=("Cs",)), min_size=0, max_size=12)


def annotation_line(name, rows, columns):
    return f"{name}: {json.dumps(rows)}: {json.dumps(columns)}"


annotation_lines = st.one_of(
    st.builds(annotation_line, names, joint_lists, joint_lists),
    st.builds(lambda name: annotation_line(name, [5] * NUM_JOINTS, [3] * NUM_JOINTS), names),
    st.text(max_size=60),
    st.builds(lambda depth: "a.jpg: " + "[" * depth + "]" * depth + ": []", st.integers(1, 5000)),
    st.builds(lambda digits: f"a.jpg: [{'9' * digits}]: [1]", st.integers(1, 6000)),
)


@SETTINGS
@given(lines=st.lists(annotation_lines, max_size=6), header=st.booleans(), on_bad_sample=st.sampled_from(["error", "skip"]))
def test_annotation_files_parse_or_name_the_line(tmp_path, lines, header, on_bad_sample):
    path = tmp_path / "annotations.csv"
    path.write_text(("name:keypoints_y:keypoints_x\n" if header else "") + "\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        annotations = read_annotations(path, on_bad_sample)
    except DataFormatError as error:
        assert on_bad_sample == "error" and "annotations.csv:" in str(error)
        return
    for keypoints in annotations.values():
        assert keypoints.shape == (NUM_JOINTS, 2) and keypoints.dtype == np.int32 and keypoints.min() >= -1


@SETTINGS
@given(data=st.binary(max_size=200))
def test_annotation_and_pair_files_of_any_bytes_parse_or_fail_cleanly(tmp_path, data):
    path = tmp_path / "file.csv"
    path.write_bytes(data)
    for reader in (read_annotations, read_pairs):
        try:
            reader(path)
        except DataFormatError:
            pass


@SETTINGS
@given(rows=st.lists(st.lists(st.text(max_size=6), max_size=4), max_size=5), header=st.sampled_from(["from,to", "from_0,from_1,to", "a,b", ""]))
def test_pair_files_give_name_pairs_or_name_the_line(tmp_path, rows, header):
    path = tmp_path / "pairs.csv"
    path.write_text(header + "\n" + "\n".join(",".join(row) for row in rows), encoding="utf-8", errors="surrogatepass")
    try:
        pairs = read_pairs(path)
    except DataFormatError as error:
        assert "pairs.csv" in str(error)
        return
    assert all(len(pair) == 2 and all(pair) for pair in pairs)


@SETTINGS
@given(value=json_values)
def test_keypoint_json_files_give_18_pairs_or_a_data_format_error(tmp_path, value):
    path = tmp_path / "pose.json"
    try:
        path.write_text(json.dumps(value))
    except ValueError:  # Python will not write an integer of more than 4300 digits either
        return
    try:
        keypoints = read_keypoints_json(path)
    except DataFormatError:
        return
    assert keypoints.shape == (NUM_JOINTS, 2) and keypoints.dtype == np.float32


override_keys = st.sampled_from(["model.p", "model.base_filters", "train.batch_size", "train.learning_rate", "train.mixed_precision",
                                 "data.root", "data.image_height", "loss.l1_weight", "train.ema_decay", "model.norm", "x.y", "train"])  # fmt: skip
override_values = st.one_of(st.text(max_size=12), st.integers(-5, 300).map(str), st.floats().map(str), st.sampled_from(["[1", "{", "null", "true", ": :", "1e-4"]))


@SETTINGS
@given(overrides=st.lists(st.one_of(st.builds(lambda key, value: f"{key}={value}", override_keys, override_values), st.text(max_size=15)), max_size=4))
def test_set_overrides_give_a_valid_config_or_a_config_error(overrides):
    try:
        config = load_config(None, overrides)
    except ConfigError:
        return
    assert isinstance(config, Config)


@SETTINGS
@given(text=st.one_of(st.text(max_size=120), st.builds(lambda section, body: f"{section}:\n  {body}\n", st.sampled_from(["model", "train", "data", "loss", "x"]),
                                                       st.text(max_size=40))))  # fmt: skip
def test_yaml_config_files_give_a_valid_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path)
    except ConfigError:
        return
    assert isinstance(config, Config)


@SETTINGS
@given(value=json_values)
def test_page_keypoints_parse_or_get_422(value):
    try:
        keypoints = parse_keypoints(value, (128, 64))
    except RequestError as error:
        assert error.status == 422
        return
    assert keypoints.shape == (NUM_JOINTS, 2) and np.isfinite(keypoints).all()


class NoEstimator:
    def estimate(self, photo, name="the photo"):
        raise AssertionError("a malformed request must be refused before any photo is looked at")


@pytest.fixture(scope="module")
def page_service(tiny_model_run):
    from pnr_tf.inference import PoseTransfer

    return PageService(PoseTransfer(tiny_model_run[1]), NoEstimator())


@SETTINGS
@given(request=st.one_of(json_values, st.fixed_dictionaries({"sources": json_values, "target_keypoints": json_values}),
                         st.fixed_dictionaries({"sources": st.lists(st.text(max_size=30), max_size=3), "target_keypoints": json_values})))  # fmt: skip
def test_page_requests_are_answered_or_refused_with_a_4xx(page_service, request):
    try:
        page_service.generate(request)
    except RequestError as error:
        assert 400 <= error.status < 500
        return
    raise AssertionError(f"a malformed request was served: {request!r}")


@pytest.fixture(scope="module")
def servicer(saved_model_base):
    from pnr_tf.serving.dev_server import PredictionServicer

    return PredictionServicer(saved_model_base, max_batch=8, max_sources=4)


dtypes = st.sampled_from([tf.uint8, tf.float32, tf.int32, tf.float64, tf.string])
dimensions = st.lists(st.one_of(st.integers(-2, 20), st.sampled_from([16, 8, 3, 18, 2, 4, 10**6, 10**12, 2**62])), max_size=6)


@st.composite
def tensor_protos(draw):
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.core.framework import tensor_shape_pb2

    dtype = draw(dtypes)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in draw(dimensions)]))
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    how = draw(st.sampled_from(["content", "values", "none"]))
    if how == "content":
        proto.tensor_content = draw(st.binary(max_size=3000))
    elif how == "values" and dtype != tf.string:
        count = draw(st.integers(0, 3000))
        field = {tf.uint8: "int_val", tf.int32: "int_val", tf.float32: "float_val", tf.float64: "double_val"}[dtype]
        getattr(proto, field).extend([0] * count)
    return proto


@SETTINGS
@given(signature=st.sampled_from(["serving_default", "multi_shot", "encode", "render"]),
       inputs=st.dictionaries(st.sampled_from(["source_image", "source_images", "source_keypoints", "target_keypoints", "coefficients", "x"]),
                              tensor_protos(), max_size=4))  # fmt: skip
def test_serving_requests_are_checked_before_anything_large_is_made(servicer, signature, inputs):
    import grpc
    from tensorflow_serving.apis import predict_pb2

    from pnr_tf.serving.dev_server import RequestError as ServingRequestError

    request = predict_pb2.PredictRequest()
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    try:
        checked = servicer._inputs(request, servicer.signature_defs[signature])
    except ServingRequestError as error:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        return
    for name, tensor in checked.items():  # what passes is within the limits and has the signature's shape
        assert tensor.shape[0] <= 8 and tensor.shape.num_elements() <= 8 * 4 * 16 * 8 * 3
