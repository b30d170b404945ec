"""A TF-Serving gRPC client for an exported pNR generator: NumPy in, NumPy out.

    from pnr_tf.serving.client import GeneratorClient
    with GeneratorClient("localhost:8500", model_name="pnr") as client:
        image = client.generate(photo, photo_keypoints, target_keypoints)        # (H, W, 3) uint8
        image = client.generate_multi_shot(photos, photos_keypoints, target_keypoints)
        person = client.encode(photos, photos_keypoints)          # once
        images = client.render(person, many_target_keypoints)     # (T, H, W, 3), no photos sent again

Images are uint8 RGB of the model's size; keypoints are 18 (y, x) pixel pairs, -1 for a missing
joint. A single example or a batch (leading batch axis) goes in; the same comes out.
"""

import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from pnr_tf.conventions import NUM_JOINTS

MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ServingError(RuntimeError):
    """The server refused or failed a request; ``code`` is the gRPC status."""

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.details = message


class InvalidRequestError(ServingError, ValueError):
    """INVALID_ARGUMENT or FAILED_PRECONDITION: the request does not fit the model's signature."""


class ModelNotFoundError(ServingError, LookupError):
    """NOT_FOUND: the server has no such model name or version."""


class ServerUnavailableError(ServingError, ConnectionError):
    """UNAVAILABLE after every retry: no server answering at the address."""


class DeadlineExceededError(ServingError, TimeoutError):
    """DEADLINE_EXCEEDED: no answer within the timeout."""


class ServerBusyError(ServingError):
    """RESOURCE_EXHAUSTED after every retry: the server holds as many requests as it takes, or the request is too large."""


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServerBusyError,
}
# Worth another attempt after a pause: a server starting or restarting, or one that is full right now.
_RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


def _images(images, rank, name):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB pixels, got {images.dtype} (convert with np.uint8 after scaling to 0-255)")
    if images.ndim not in (rank, rank + 1) or images.shape[-1] != 3:
        raise ValueError(f"{name} must have shape {'(M, ' if rank == 4 else '('}H, W, 3) or a leading batch axis, got {images.shape}")
    return images


def _keypoints(keypoints, rank, name):
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim not in (rank, rank + 1) or keypoints.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"{name} must have shape (..., {NUM_JOINTS}, 2) as (y, x) pixels, got {keypoints.shape}")
    return keypoints


class GeneratorClient:
    """Calls the ``serving_default``, ``multi_shot``, ``encode`` and ``render`` signatures of a served generator.

    Args:
        address: ``host:port`` of TF-Serving's gRPC endpoint (or the dev server).
        model_name: the served model's name (TF-Serving's ``--model_name`` / models.config name).
        version: a specific version, or None for the newest the server has.
        timeout: seconds per call (the gRPC deadline), retries included.
        max_retries: further attempts after UNAVAILABLE (server starting or restarting) or
            RESOURCE_EXHAUSTED (server full).
        retry_delay: seconds before the first retry; doubles each time.
    """

    def __init__(self, address, model_name="pnr", version=None, timeout=30.0, max_retries=3, retry_delay=0.2):
        self.address = address
        self.model_name = model_name
        self.version = version
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.retry_delay = float(retry_delay)
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()

    def close(self):
        self.channel.close()

    def _model_spec(self, model_spec, signature_name=None):
        model_spec.name = self.model_name
        if self.version is not None:
            model_spec.version.value = int(self.version)
        if signature_name is not None:
            model_spec.signature_name = signature_name

    def _call(self, method, request):
        deadline = time.monotonic() + self.timeout
        delay = self.retry_delay
        for attempt in range(self.max_retries + 1):
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 1e-3))
            except grpc.RpcError as error:
                code = error.code()
                # A message over the server's size limit is RESOURCE_EXHAUSTED too, and never succeeds later.
                too_large = "larger than max" in (error.details() or "")
                retry = code in _RETRIED and not too_large and attempt < self.max_retries
                if retry and deadline - time.monotonic() > delay:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise _ERRORS.get(code, ServingError)(code, f"{error.details()} (server {self.address})") from None
        raise AssertionError("unreachable")

    def predict(self, inputs, signature_name="serving_default"):
        """Raw Predict: a dict of arrays in (dtypes as the signature wants), a dict of arrays out."""
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature_name)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        response = self._call(self.stub.Predict, request)
        return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}

    def generate(self, source_image, source_keypoints, target_keypoints):
        """One source: (H, W, 3) uint8 + (18, 2) + (18, 2) -> (H, W, 3) uint8, or all with a batch axis."""
        return self._generate("serving_default", "source_image", source_image, 3, source_keypoints, target_keypoints)

    def generate_multi_shot(self, source_images, source_keypoints, target_keypoints):
        """M sources: (M, H, W, 3) uint8 + (M, 18, 2) + (18, 2) -> (H, W, 3) uint8, or all with a batch axis."""
        return self._generate("multi_shot", "source_images", source_images, 4, source_keypoints, target_keypoints)

    def encode(self, source_images, source_keypoints):
        """One person from M photos: (M, H, W, 3) uint8 + (M, 18, 2) -> W (1, k, d) float32; batched (b, M, ...) -> (b, k, d).

        Render it in any number of poses with ``render``, without sending the photos again.
        """
        images = _images(source_images, 4, "source_images")
        keypoints = _keypoints(source_keypoints, 3, "source_keypoints")
        if images.ndim == 4:
            images, keypoints = images[np.newaxis], keypoints[np.newaxis]
        return self.predict({"source_images": images, "source_keypoints": keypoints}, "encode")["coefficients"]

    def render(self, coefficients, target_keypoints):
        """W (1, k, d) from ``encode`` in each of (T, 18, 2) poses -> (T, H, W, 3) uint8 (one pose (18, 2) -> (H, W, 3)).

        A W with a NaN or an infinity raises ValueError here (the server refuses it too).
        """
        keypoints = _keypoints(target_keypoints, 2, "target_keypoints")
        single = keypoints.ndim == 2
        coefficients = np.asarray(coefficients, np.float32)
        if coefficients.ndim == 2:
            coefficients = coefficients[np.newaxis]
        if coefficients.ndim != 3:
            raise ValueError(f"coefficients must be one person's W (1, k, d) from encode, got shape {coefficients.shape}")
        if not np.isfinite(coefficients).all():
            raise ValueError("coefficients (the person's W from encode) must be finite: a NaN or an infinity draws no person")
        image = self.predict({"coefficients": coefficients, "target_keypoints": keypoints[np.newaxis] if single else keypoints}, "render")["image"]
        return image[0] if single else image

    def _generate(self, signature, image_name, images, image_rank, source_keypoints, target_keypoints):
        images = _images(images, image_rank, image_name)
        batched = images.ndim == image_rank + 1
        inputs = {
            image_name: images,
            "source_keypoints": _keypoints(source_keypoints, image_rank - 1, "source_keypoints"),
            "target_keypoints": _keypoints(target_keypoints, 2, "target_keypoints"),
        }
        if not batched:
            inputs = {name: value[np.newaxis] for name, value in inputs.items()}
        image = self.predict(inputs, signature)["image"]
        return image if batched else image[0]

    def metadata(self):
        """{signature name: {"inputs": {name: (dtype, shape)}, "outputs": {...}}}; -1 marks a dynamic axis."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self.stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)

        def describe(tensors):
            return {
                name: (tf.dtypes.as_dtype(info.dtype).name, tuple(dim.size for dim in info.tensor_shape.dim))
                for name, info in tensors.items()
            }

        return {
            name: {"inputs": describe(signature.inputs), "outputs": describe(signature.outputs)}
            for name, signature in signature_map.signature_def.items()
        }
