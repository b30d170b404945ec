"""`python -m pnr_tf.serving.dev_server`: TF-Serving's PredictionService over an exported SavedModel.

    python -m pnr_tf.serving.dev_server --model-base-path models/pnr --port 8500

For tests and local use on machines without TF-Serving. It loads the newest numeric version
under the base path once, at start, and answers Predict and GetModelMetadata with the status codes
TF-Serving gives (NOT_FOUND for an unknown model or version, FAILED_PRECONDITION for an unknown
signature, INVALID_ARGUMENT for missing, extra or mistyped inputs). Production serving uses
TF-Serving itself: see export/README.md and export/compose.yaml.

It listens on 127.0.0.1 unless --host says otherwise. Every shape a request declares is checked
against the signature and the limits (--max-batch, --max-sources) before any array is made from
it; gRPC refuses larger messages unread; requests beyond --workers + --max-queued at once are
answered RESOURCE_EXHAUSTED.
"""

import argparse
import re
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from pnr_tf.export.saved_model import existing_versions
from pnr_tf.serving.client import MAX_MESSAGE_BYTES

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_BATCH = 64  # a batch of 256 raised the server's memory by ~460 MB: a few such requests exhaust a small host
DEFAULT_MAX_SOURCES = 16  # photos of one person in a multi_shot or encode example
# Requests run this many at a time (TensorFlow spreads each over every core); up to DEFAULT_MAX_QUEUED more
# wait, and further ones are answered RESOURCE_EXHAUSTED at once instead of holding their memory in a queue.
DEFAULT_WORKERS = 4
DEFAULT_MAX_QUEUED = 28
# Bytes a value of each input type may take on the wire (uint8 as protobuf varints: up to 2 bytes each).
_WIRE_BYTES = {types_pb2.DT_UINT8: 2, types_pb2.DT_FLOAT: 4, types_pb2.DT_INT32: 5, types_pb2.DT_INT64: 10, types_pb2.DT_DOUBLE: 8}
# The repeated field each dtype's values arrive in when not packed into tensor_content.
_VALUE_FIELDS = {types_pb2.DT_UINT8: "int_val", types_pb2.DT_INT32: "int_val", types_pb2.DT_INT64: "int64_val",
                 types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_HALF: "half_val"}  # fmt: skip


def read_signature_defs(version_dir):
    """The SavedModel's SignatureDefs (what TF-Serving reports in GetModelMetadata)."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    signatures = saved_model.meta_graphs[0].signature_def
    return {name: signature for name, signature in signatures.items() if not name.startswith("__")}


def _shape_matches(shape, signature_shape):
    if signature_shape.unknown_rank:
        return True
    dims = [dim.size for dim in signature_shape.dim]
    return len(shape) == len(dims) and all(want < 0 or want == got for got, want in zip(shape, dims))


def _format_shape(signature_shape):
    return "(" + ", ".join("?" if dim.size < 0 else str(dim.size) for dim in signature_shape.dim) + ")"


def readable(message):
    """An in-graph check's own message, without TensorFlow's "Graph execution error", node and stack text."""
    match = re.search(r"assertion failed: \[(.*?)\](?:\s*\[\[|\s*$|\n)", message)
    if match:  # tf.debugging.Assert; assert_positive and friends add "] [Condition ...] [x = ] [0" after the message
        return match.group(1).split("] [", 1)[0].strip()
    lines = [line.strip() for line in message.splitlines()]
    for index, line in enumerate(lines):
        if " [Condition " in line:  # assert_positive and friends: "message [Condition ...]"
            return line.split(" [Condition ", 1)[0]
        if line.startswith("Condition ") and index > 0:  # assert_equal: the message is the line before
            return lines[index - 1]
    return re.split(r"\s*\[\[", lines[0], maxsplit=1)[0] if lines else message


class RequestError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata for one model; Classify, Regress, MultiInference stay UNIMPLEMENTED."""

    def __init__(self, model_base_path, model_name=None, max_batch=DEFAULT_MAX_BATCH, max_sources=DEFAULT_MAX_SOURCES):
        self.max_batch = int(max_batch)
        self.max_sources = int(max_sources)
        base = Path(model_base_path)
        versions = existing_versions(base)
        if not versions:
            raise FileNotFoundError(f"no numeric version folder under {base} (export with python -m pnr_tf.export)")
        self.model_name = model_name or base.name
        self.version = versions[-1]
        version_dir = base / str(self.version)
        self.signature_defs = read_signature_defs(version_dir)
        self.model = tf.saved_model.load(str(version_dir))

    def _check_model_spec(self, model_spec):
        if model_spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({model_spec.name})")
        if model_spec.HasField("version") and model_spec.version.value != self.version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({model_spec.name}, {model_spec.version.value})",
            )

    def _inputs(self, request, signature_def):
        """The request's tensors, every declared size checked before any array is made from them."""
        wanted, sent = set(signature_def.inputs), set(request.inputs)
        if wanted != sent:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(wanted)}; "
                f"sent extra: {sorted(sent - wanted)}, missing but required: {sorted(wanted - sent)}",
            )
        shapes = {name: self._declared_shape(name, tensor_proto, signature_def.inputs[name]) for name, tensor_proto in request.inputs.items()}
        self._check_batch(shapes)
        inputs = {}
        for name, tensor_proto in request.inputs.items():
            try:
                array = tf.make_ndarray(tensor_proto)
            except (ValueError, TypeError) as error:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r} is malformed: {error}") from error
            inputs[name] = tf.constant(array)
        return inputs

    def _declared_shape(self, name, tensor_proto, expected):
        """The shape a TensorProto declares, checked against the signature and the limits; nothing allocated yet.

        A 145-byte request may declare a batch of 10^12: its shape is all that is read before it is refused.
        """
        if tensor_proto.dtype != expected.dtype:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {name!r} expects {types_pb2.DataType.Name(expected.dtype)} but "
                f"{types_pb2.DataType.Name(tensor_proto.dtype)} was sent",
            )
        if tensor_proto.tensor_shape.unknown_rank or any(dim.size < 0 for dim in tensor_proto.tensor_shape.dim):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r} must declare a complete shape")
        shape = tuple(dim.size for dim in tensor_proto.tensor_shape.dim)
        if not _shape_matches(shape, expected.tensor_shape):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r} must have shape {_format_shape(expected.tensor_shape)}, got {shape}"
            )
        if shape and shape[0] > self.max_batch:
            what = "people in coefficients" if name == "coefficients" else "examples"
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a batch of {shape[0]} {what} exceeds this server's maximum of {self.max_batch}: split the request "
                "(or start the server with a larger --max-batch)",
            )
        multi_source = (name == "source_images" and len(shape) == 5) or (name == "source_keypoints" and len(shape) == 4)
        if multi_source and shape[1] > self.max_sources:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{shape[1]} source photos per example exceed this server's maximum of {self.max_sources} (--max-sources)",
            )
        # Values must fit the declared shape (fewer are allowed: TensorFlow repeats the last one, as TF-Serving does).
        elements = int(np.prod(shape, dtype=np.int64))
        if tensor_proto.tensor_content:
            expected_bytes = elements * tf.dtypes.as_dtype(tensor_proto.dtype).size
            if len(tensor_proto.tensor_content) != expected_bytes:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {name!r} declares shape {shape} ({expected_bytes} bytes) but carries {len(tensor_proto.tensor_content)} bytes",
                )
        elif len(getattr(tensor_proto, _VALUE_FIELDS.get(tensor_proto.dtype, "int_val"))) > elements:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r} carries more values than its shape {shape} holds")
        return shape

    def _check_batch(self, shapes):
        """Batch and source counts agree, batch in 1..max_batch, at least one source: plain messages, before any graph runs."""
        # render's coefficients are one person for every target pose: its graph checks that batch of 1.
        batch_sizes = {name: shape[0] for name, shape in shapes.items() if shape and name != "coefficients"}
        if len(set(batch_sizes.values())) > 1:
            sizes = ", ".join(f"{name} {size}" for name, size in sorted(batch_sizes.items()))
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"all inputs must have the same batch size; got {sizes}")
        batch_size = next(iter(batch_sizes.values()), 0)
        if batch_size == 0:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "the batch is empty: send at least one example")
        if "source_images" in shapes and "source_keypoints" in shapes and shapes["source_images"][1] != shapes["source_keypoints"][1]:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"source_images has {shapes['source_images'][1]} sources per example but source_keypoints "
                f"{shapes['source_keypoints'][1]}",
            )
        if "source_images" in shapes and shapes["source_images"][1] == 0:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "at least one source image is needed per example")

    def max_request_bytes(self):
        """The largest request any signature can take within the limits (gRPC's receive limit is set to it)."""
        largest = 0
        for signature_def in self.signature_defs.values():
            total = 0
            for name, info in signature_def.inputs.items():
                dims = [dim.size for dim in info.tensor_shape.dim]
                sizes = [self.max_batch if axis == 0 else self.max_sources if size < 0 else size for axis, size in enumerate(dims)]
                total += int(np.prod(sizes, dtype=np.int64)) * _WIRE_BYTES.get(info.dtype, 8)
            largest = max(largest, total)
        return largest + 64 * 1024  # the request's own fields and framing

    def Predict(self, request, context):
        try:
            self._check_model_spec(request.model_spec)
            signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature_name not in self.signature_defs:
                raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.')
            inputs = self._inputs(request, self.signature_defs[signature_name])
            try:
                outputs = self.model.signatures[signature_name](**inputs)
            except tf.errors.InvalidArgumentError as error:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, readable(error.message)) from error
        except RequestError as error:
            context.abort(error.code, str(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature_name
        wanted = set(request.output_filter) or set(outputs)
        for name, tensor in outputs.items():
            if name in wanted:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
        return response

    def GetModelMetadata(self, request, context):
        try:
            self._check_model_spec(request.model_spec)
            unsupported = [field for field in request.metadata_field if field != "signature_def"]
            if unsupported or not request.metadata_field:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {unsupported or '(none)'} is not supported; ask for signature_def"
                )
        except RequestError as error:
            context.abort(error.code, str(error))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in self.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = self.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


def serve(model_base_path, port=8500, model_name=None, host="127.0.0.1", max_workers=DEFAULT_WORKERS, max_batch=DEFAULT_MAX_BATCH,
          max_sources=DEFAULT_MAX_SOURCES, max_queued=DEFAULT_MAX_QUEUED):  # fmt: skip
    """Starts the server in background threads; returns (server, bound port, servicer). ``port=0`` picks a free one.

    Binds ``host`` only (this machine by default). gRPC refuses a message larger than the largest
    request the limits allow before it is parsed; at most ``max_workers + max_queued`` requests are
    held at once, the rest answered RESOURCE_EXHAUSTED, so memory stays bounded under any load.
    """
    servicer = PredictionServicer(model_base_path, model_name, max_batch, max_sources)
    options = [("grpc.max_receive_message_length", servicer.max_request_bytes()), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options,
                         maximum_concurrent_rpcs=max_workers + max_queued)  # fmt: skip
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    bound_port = server.add_insecure_port(f"{host}:{port}")
    if bound_port == 0:
        raise OSError(f"could not bind {host}:{port}")
    server.start()
    return server, bound_port, servicer


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m pnr_tf.serving.dev_server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-base-path", required=True, help="<out>/<model_name> as written by python -m pnr_tf.export")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (TF-Serving's default 8500; 0 = any free port)")
    parser.add_argument("--model-name", default=None, help="name clients ask for (default: the base path's folder name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only). 0.0.0.0 (or [::]) exposes the "
                             "server, which has no authentication and no TLS, to every network this machine is on")  # fmt: skip
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help=f"largest batch a request may carry (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--max-sources", type=int, default=DEFAULT_MAX_SOURCES,
                        help=f"most photos per example in multi_shot and encode (default {DEFAULT_MAX_SOURCES})")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"requests run at once (default {DEFAULT_WORKERS})")
    parser.add_argument("--max-queued", type=int, default=DEFAULT_MAX_QUEUED,
                        help=f"requests that may wait for a worker; beyond, RESOURCE_EXHAUSTED (default {DEFAULT_MAX_QUEUED})")
    arguments = parser.parse_args(argv)
    for option in ("max_batch", "max_sources", "workers"):
        if getattr(arguments, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    if arguments.max_queued < 0:
        parser.error("--max-queued must be >= 0")
    try:
        server, port, servicer = serve(
            arguments.model_base_path, arguments.port, arguments.model_name, arguments.host, arguments.workers, arguments.max_batch,
            arguments.max_sources, arguments.max_queued,
        )  # fmt: skip
    except (FileNotFoundError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    stopped = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    print(f"serving model {servicer.model_name!r} version {servicer.version} on {arguments.host}:{port}", flush=True)
    stopped.wait()
    server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
