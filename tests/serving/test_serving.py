"""gRPC through the dev server: the client's round trip, concurrency, retries and TF-Serving's error statuses."""

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pnr_tf.serving.client import GeneratorClient
from pnr_tf.serving.client import InvalidRequestError
from pnr_tf.serving.client import ModelNotFoundError
from pnr_tf.serving.client import ServerUnavailableError
from pnr_tf.serving.dev_server import serve
from tests.helpers import random_serving_inputs
from tests.helpers import reference_generate
from tests.helpers import tensor_declaring

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server_address(saved_model_base):
    server, port, _ = serve(saved_model_base, port=0, host="localhost")
    yield f"localhost:{port}"
    server.stop(grace=None)


@pytest.fixture(scope="module")
def local_model(saved_model_base):
    return tf.saved_model.load(str(saved_model_base / "1"))


def local_single_shot(local_model, images, source_keypoints, target_keypoints):
    return local_model.signatures["serving_default"](
        source_image=images, source_keypoints=source_keypoints, target_keypoints=target_keypoints
    )["image"].numpy()


def test_round_trip_equals_the_local_model(server_address, local_model, serving_generator):
    images, source_keypoints, target_keypoints = random_serving_inputs(2, 1, seed=21)
    with GeneratorClient(server_address) as client:
        batch = client.generate(images[:, 0], source_keypoints[:, 0], target_keypoints)
        single = client.generate(images[1, 0], source_keypoints[1, 0], target_keypoints[1])
    np.testing.assert_array_equal(batch, local_single_shot(local_model, images[:, 0], source_keypoints[:, 0], target_keypoints))
    np.testing.assert_array_equal(single, batch[1])
    _, expected = reference_generate(serving_generator, images, source_keypoints, target_keypoints)
    assert np.abs(batch.astype(int) - expected.astype(int)).max() <= 1


def test_multi_shot_round_trip_for_three_sources(server_address, serving_generator):
    images, source_keypoints, target_keypoints = random_serving_inputs(1, 3, seed=22)
    with GeneratorClient(server_address) as client:
        image = client.generate_multi_shot(images[0], source_keypoints[0], target_keypoints[0])
    _, expected = reference_generate(serving_generator, images, source_keypoints, target_keypoints)
    assert image.shape == (16, 8, 3) and np.abs(image.astype(int) - expected[0].astype(int)).max() <= 1


def test_thirty_two_concurrent_requests_are_all_answered_correctly(server_address, local_model):
    requests = [random_serving_inputs(1, 1, seed=100 + index) for index in range(32)]
    expected = [local_single_shot(local_model, images[:, 0], source[:, 0], target)[0] for images, source, target in requests]
    with GeneratorClient(server_address) as client, futures.ThreadPoolExecutor(32) as pool:
        barrier = threading.Barrier(32)

        def call(request):
            images, source, target = request
            barrier.wait()  # all 32 in flight together
            return client.generate(images[0, 0], source[0, 0], target[0])

        answers = list(pool.map(call, requests))
    for answer, reference in zip(answers, expected):
        np.testing.assert_array_equal(answer, reference)


def test_metadata_describes_both_signatures(server_address):
    with GeneratorClient(server_address) as client:
        metadata = client.metadata()
    assert set(metadata) == {"serving_default", "multi_shot", "encode", "render"}
    assert metadata["render"]["inputs"]["coefficients"] == ("float32", (-1, 4, 16))
    assert metadata["serving_default"]["inputs"]["source_image"] == ("uint8", (-1, 16, 8, 3))
    assert metadata["multi_shot"]["inputs"]["source_keypoints"] == ("float32", (-1, -1, 18, 2))
    assert metadata["multi_shot"]["outputs"] == {"image": ("uint8", (-1, 16, 8, 3)), "valid": ("bool", (-1,))}


def test_bad_requests_get_tf_serving_statuses_and_the_server_keeps_serving(server_address, local_model):
    images, source_keypoints, target_keypoints = random_serving_inputs(2, 1, seed=23)
    good = {"source_image": images[:, 0], "source_keypoints": source_keypoints[:, 0], "target_keypoints": target_keypoints}
    bad_requests = {
        "wrong dtype": ({**good, "source_image": images[:, 0].astype(np.float32)}, "serving_default", "expects DT_UINT8"),
        "wrong rank": ({**good, "source_image": images}, "serving_default", "must have shape"),
        "wrong size": ({**good, "source_image": images[:, 0, :8]}, "serving_default", "must have shape"),
        "missing input": ({"source_image": images[:, 0], "source_keypoints": source_keypoints[:, 0]}, "serving_default", "missing"),
        "batch mismatch": ({**good, "target_keypoints": target_keypoints[:1]}, "serving_default", "same batch size"),
        "unknown signature": (good, "classify", 'signature key "classify" not found'),
    }
    statuses = {"unknown signature": grpc.StatusCode.FAILED_PRECONDITION}
    with GeneratorClient(server_address) as client:
        for case, (inputs, signature, message) in bad_requests.items():
            with pytest.raises(InvalidRequestError, match=message) as error:
                client.predict(inputs, signature)
            assert error.value.code == statuses.get(case, grpc.StatusCode.INVALID_ARGUMENT), case
        with pytest.raises(ValueError, match="uint8"):  # caught before sending
            client.generate(images[0, 0].astype(np.float32), source_keypoints[0, 0], target_keypoints[0])
        answer = client.predict(good)["image"]
    np.testing.assert_array_equal(answer, local_single_shot(local_model, *good.values()))

    for name, version in (("someone_else", None), ("pnr", 99)):
        with GeneratorClient(server_address, model_name=name, version=version) as client:
            with pytest.raises(ModelNotFoundError) as error:
                client.predict(good)
            assert error.value.code == grpc.StatusCode.NOT_FOUND


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_client_retries_while_the_server_is_starting(saved_model_base):
    port = free_port()
    images, source_keypoints, target_keypoints = random_serving_inputs(1, 1, seed=24)
    started = []
    timer = threading.Timer(1.0, lambda: started.append(serve(saved_model_base, port=port, host="localhost")[0]))
    timer.start()
    try:
        with GeneratorClient(f"localhost:{port}", timeout=60, max_retries=10, retry_delay=0.1) as client:
            image = client.generate(images[0, 0], source_keypoints[0, 0], target_keypoints[0])
        assert image.shape == (16, 8, 3)
    finally:
        timer.join()
        for server in started:
            server.stop(grace=None)

    with GeneratorClient(f"localhost:{free_port()}", timeout=5, max_retries=2, retry_delay=0.05) as client:
        began = time.monotonic()
        with pytest.raises(ServerUnavailableError):
            client.generate(images[0, 0], source_keypoints[0, 0], target_keypoints[0])
        assert time.monotonic() - began < 5


def test_dev_server_command_serves_the_latest_version_until_terminated(serving_generator, tmp_path):
    from pnr_tf.export import export_saved_model

    export_saved_model(serving_generator, tmp_path, "pnr", version=3)
    export_saved_model(serving_generator, tmp_path, "pnr", version=12)  # newest by number, not by name
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    command = [sys.executable, "-m", "pnr_tf.serving.dev_server", "--model-base-path", str(tmp_path / "pnr"), "--port", str(port)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        images, source_keypoints, target_keypoints = random_serving_inputs(1, 1, seed=25)
        request = {"source_image": images[:, 0], "source_keypoints": source_keypoints[:, 0], "target_keypoints": target_keypoints}
        with GeneratorClient(f"localhost:{port}", timeout=120, max_retries=60, retry_delay=0.5) as client:
            assert client.predict(request)["image"].shape == (1, 16, 8, 3)
        with GeneratorClient(f"localhost:{port}", version=12) as client:
            assert client.predict(request)["image"].shape == (1, 16, 8, 3)
        with GeneratorClient(f"localhost:{port}", version=3) as client, pytest.raises(ModelNotFoundError):
            client.predict(request)
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "version 12" in stdout


def test_serving_assets_are_a_valid_tf_serving_setup():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((REPOSITORY / "export" / "models.config").read_text(), config)
    (model,) = config.model_config_list.config
    assert model.name == "pnr" and model.model_platform == "tensorflow"
    compose = (REPOSITORY / "export" / "compose.yaml").read_text()
    assert "tensorflow/serving" in compose and "--model_config_file=/models/models.config" in compose
    assert model.base_path.startswith("/models/")


def test_request_example_writes_the_generated_pair(server_address, synthetic_root, tmp_path):
    sys.path.insert(0, str(REPOSITORY / "export"))
    try:
        import request_example
    finally:
        sys.path.pop(0)
    out = tmp_path / "generated.png"
    assert request_example.main(["--address", server_address, "--data-root", str(synthetic_root), "--out", str(out)]) == 0
    picture = cv2.imread(str(out))
    assert picture.shape == (16, 16, 3)  # source | generated at the served model's 16 x 8


def test_bad_batches_and_poses_get_plain_messages_and_a_nan_joint_is_a_missing_one(saved_model_base, local_model):
    server, port, _ = serve(saved_model_base, port=0, host="localhost", max_batch=3)
    images, source_keypoints, target_keypoints = random_serving_inputs(4, 2, seed=31)
    request = lambda count: {"source_images": images[:count], "source_keypoints": source_keypoints[:count], "target_keypoints": target_keypoints[:count]}  # noqa: E731
    no_joints = request(2)
    no_joints["source_keypoints"] = source_keypoints[:2].copy()
    no_joints["source_keypoints"][1, 0] = -1.0
    cases = {
        "too large": (request(4), "a batch of 4 examples exceeds this server's maximum of 3"),
        "empty": (request(0), "the batch is empty"),
        "mismatch": ({**request(2), "target_keypoints": target_keypoints[:1]}, "all inputs must have the same batch size"),
        "sources": ({**request(2), "source_keypoints": source_keypoints[:2, :1]}, "2 sources per example but source_keypoints 1"),
        "no joints": (no_joints, "every source image needs at least one visible keypoint"),
    }
    try:
        with GeneratorClient(f"localhost:{port}") as client:
            for case, (inputs, message) in cases.items():
                with pytest.raises(InvalidRequestError, match=message) as error:
                    client.predict(inputs, "multi_shot")
                assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT, case
                assert "node" not in error.value.details and "Condition" not in error.value.details, error.value.details
            nan_request, missing_request = request(2), request(2)
            nan_request["target_keypoints"] = target_keypoints[:2].copy()
            missing_request["target_keypoints"] = target_keypoints[:2].copy()
            nan_request["target_keypoints"][0, 5] = np.nan
            missing_request["target_keypoints"][0, 5] = -1.0
            answer = client.predict(nan_request, "multi_shot")
            np.testing.assert_array_equal(answer["image"], client.predict(missing_request, "multi_shot")["image"])
            assert answer["image"].std() > 20 and answer["valid"].tolist() == [True, True]
    finally:
        server.stop(grace=None)


def test_encode_once_and_render_many_over_grpc(server_address, local_model):
    images, source_keypoints, target_keypoints = random_serving_inputs(6, 2, seed=41)
    with GeneratorClient(server_address) as client:
        person = client.encode(images[0], source_keypoints[0])
        frames = client.render(person, target_keypoints)
        one = client.render(person, target_keypoints[3])
    expected = local_model.signatures["multi_shot"](
        source_images=np.repeat(images[:1], 6, axis=0), source_keypoints=np.repeat(source_keypoints[:1], 6, axis=0),
        target_keypoints=target_keypoints,
    )["image"].numpy()  # fmt: skip
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_array_equal(one, expected[3])
    broken = person.copy()
    broken[0, 0, 0] = np.inf
    with GeneratorClient(server_address) as client:
        with pytest.raises(ValueError, match="must be finite"):  # the client refuses before sending
            client.render(broken, target_keypoints)
        with pytest.raises(InvalidRequestError, match="INVALID_ARGUMENT: coefficients .* must be finite"):  # and so does the server
            client.predict({"coefficients": broken, "target_keypoints": target_keypoints}, "render")


def raw_predict(address, inputs, signature="serving_default"):
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "pnr"
    request.model_spec.signature_name = signature
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto if isinstance(proto, tensor_pb2.TensorProto) else tf.make_tensor_proto(proto))
    with grpc.insecure_channel(address) as channel:
        try:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def resident_megabytes():
    return int(next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def test_declared_sizes_are_checked_before_anything_is_allocated(saved_model_base):
    """Tiny requests that declare huge tensors, too many photos or values that do not fit get INVALID_ARGUMENT, nothing allocated."""
    server, port, servicer = serve(saved_model_base, port=0, host="127.0.0.1", max_batch=8, max_sources=4)
    address = f"127.0.0.1:{port}"
    images, source_keypoints, target_keypoints = random_serving_inputs(2, 2, seed=51)
    good = {"source_image": images[:, 0], "source_keypoints": source_keypoints[:, 0], "target_keypoints": target_keypoints}
    try:
        before = resident_megabytes()
        cases = [
            ({**good, "source_image": tensor_declaring(np.uint8, (20000, 16, 8, 3))}, "serving_default", "a batch of 20000 examples exceeds"),
            ({**good, "source_image": tensor_declaring(np.uint8, (10**12, 16, 8, 3))}, "serving_default", "exceeds this server's maximum"),
            ({**good, "source_image": tensor_declaring(np.uint8, (2, 10**9, 8, 3))}, "serving_default", "must have shape"),
            ({"source_images": tensor_declaring(np.uint8, (1, 5000, 16, 8, 3)), "source_keypoints": tensor_declaring(np.float32, (1, 5000, 18, 2)),
              "target_keypoints": target_keypoints[:1]}, "multi_shot", "5000 source photos per example exceed this server's maximum of 4"),
            ({"source_images": images[:, :0], "source_keypoints": source_keypoints[:, :0], "target_keypoints": target_keypoints},
             "multi_shot", "at least one source image is needed"),
            ({"coefficients": tensor_declaring(np.float32, (10**6, 4, 16)), "target_keypoints": target_keypoints}, "render", "people in coefficients"),
        ]  # fmt: skip
        short_content = tf.make_tensor_proto(images[:, 0])
        short_content.tensor_content = short_content.tensor_content[:-5]
        cases.append(({**good, "source_image": short_content}, "serving_default", "bytes"))
        for inputs, signature, message in cases:
            code, details = raw_predict(address, inputs, signature)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, (message, code, details)
        assert resident_megabytes() - before < 50  # nothing the size of the declared tensors was made
        # gRPC itself refuses a message beyond the largest request the limits allow, before parsing it.
        assert servicer.max_request_bytes() < 1024 * 1024
        code, details = raw_predict(address, {**good, "source_image": np.zeros((2, 16, 8, 3 * 20000), np.uint8)})
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        with GeneratorClient(address) as client:  # and goes on serving
            np.testing.assert_array_equal(client.predict(good)["image"].shape, (2, 16, 8, 3))
    finally:
        server.stop(grace=None)


def listening_addresses(port):
    """Local addresses (hex, as /proc/net/tcp* writes them) with a socket listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.append(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_the_dev_server_binds_this_machine_only_by_default(saved_model_base):
    server, port, _ = serve(saved_model_base, port=0)
    try:
        addresses = listening_addresses(port)
        # 127.0.0.1, on its own or as IPv6's ::ffff:127.0.0.1; not 0.0.0.0 (00000000) or [::] (all zeros)
        assert addresses and set(addresses) <= {"0100007F", "0000000000000000FFFF00000100007F"}, addresses
    finally:
        server.stop(grace=None)


def test_in_graph_check_messages_are_read_without_graph_text(saved_model_base):
    from pnr_tf.serving.dev_server import readable

    multi_shot = tf.saved_model.load(str(saved_model_base / "1")).signatures["multi_shot"]
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:  # what TF-Serving itself would run for M = 0
        multi_shot(source_images=np.zeros((2, 0, 16, 8, 3), np.uint8), source_keypoints=np.zeros((2, 0, 18, 2), np.float32),
                   target_keypoints=np.full((2, 18, 2), 3.0, np.float32))  # fmt: skip
    assert readable(raised.value.message) == "at least one source image is needed"
