"""The gRPC dev server and the page under load from many clients, good, bad and hostile requests mixed, printed.

    python -m benchmarks.bench_serving_load [--clients 8] [--seconds 30] [--model runs/quickstart]

Each server runs in its own process (as users start it: ``python -m pnr_tf.serving.dev_server``,
``python -m pnr_tf.app``), on a model of the quickstart's size with fresh weights unless --model is
given. First a quiet run: each good request once, its answer kept. Then --clients threads send for
--seconds, each drawing requests from a fixed mix:

- good: generations that succeed in the quiet run, their answers under load compared byte for byte;
- bad: wrong dtype, a pose without joints, non-JSON, a text/plain or cross-origin POST, a foreign Host;
- oversized: a 145-byte request declaring a batch of 20000, 10^12 or 5000 photos, a PNG declaring
  30000 x 30000 pixels, an upload over 8 MB.

Printed per server: requests/s, p50 / p99 latency of good and of refused requests, answers by kind
(status), good answers that differed from the quiet run's, and the server's resident memory: idle
(after the quiet run) and peak during the load (VmHWM, reset before the load through clear_refs).
"""

import argparse
import base64
import collections
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pnr_tf  # noqa: F401, I001  (first: quiet TensorFlow start-up)  # isort: skip
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from pnr_tf.config import load_config
from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import read_pairs
from pnr_tf.data.synthetic import write_synthetic_dataset
from pnr_tf.export import export_keras
from pnr_tf.export import export_saved_model
from pnr_tf.models.factory import generator_from_config
from pnr_tf.models.loading import load_generator
from tests.helpers import png_declaring
from tests.helpers import tensor_declaring

REPOSITORY = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_kilobytes(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_memory(pid):
    """Linux: writing 5 to clear_refs resets VmHWM to the current resident size."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# gRPC ------------------------------------------------------------------------------------------


def grpc_requests(samples, image_size):
    """{kind: [(name, PredictRequest)]} for the dev server."""
    height, width = image_size

    def request(inputs, signature="serving_default"):
        message = predict_pb2.PredictRequest()
        message.model_spec.name = "pnr"
        message.model_spec.signature_name = signature
        for name, value in inputs.items():
            message.inputs[name].CopyFrom(value if not isinstance(value, np.ndarray) else tf.make_tensor_proto(value))
        return message

    good = [(f"good {index}", request(inputs)) for index, inputs in enumerate(samples)]
    first = samples[0]
    no_joints = {**first, "source_keypoints": np.full_like(first["source_keypoints"], -1.0)}
    bad = [
        ("bad dtype", request({**first, "source_image": first["source_image"].astype(np.float32)})),
        ("bad no joints", request(no_joints)),
        ("bad signature", request(first, "classify")),
    ]
    oversized = [
        ("declared batch 20000", request({**first, "source_image": tensor_declaring(np.uint8, (20000, height, width, 3))})),
        ("declared batch 10^12", request({**first, "source_image": tensor_declaring(np.uint8, (10**12, height, width, 3))})),
        ("declared 5000 sources", request({"source_images": tensor_declaring(np.uint8, (1, 5000, height, width, 3)),
                                           "source_keypoints": tensor_declaring(np.float32, (1, 5000, 18, 2)),
                                           "target_keypoints": first["target_keypoints"]}, "multi_shot")),
    ]  # fmt: skip
    return {"good": good, "bad": bad, "oversized": oversized}


def grpc_call(stub, message):
    try:
        response = stub.Predict(message, timeout=120)
        return "OK", tf.make_ndarray(response.outputs["image"]).tobytes()
    except grpc.RpcError as error:
        return error.code().name, None


# The page --------------------------------------------------------------------------------------


def page_requests(photos, target_keypoints, port):
    """{kind: [(name, (headers, body))]} for the page's /api/generate."""
    def data_url(data, kind="jpeg"):
        return f"data:image/{kind};base64," + base64.b64encode(data).decode()

    target = [None if (point < 0).any() else [float(point[0]), float(point[1])] for point in target_keypoints]
    own = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
    body = lambda sources, pose=target: json.dumps({"sources": sources, "target_keypoints": pose}).encode()  # noqa: E731
    good = [(f"good {index}", (own, body([data_url(photo)]))) for index, photo in enumerate(photos)]
    bad = [
        ("bad no joints", (own, body([data_url(photos[0])], [None] * 18))),
        ("bad not JSON", (own, b"{not json")),
        ("bad text/plain", ({"Content-Type": "text/plain"}, body([data_url(photos[0])]))),
        ("bad other origin", ({**own, "Origin": "http://evil.example"}, body([data_url(photos[0])]))),
        ("bad foreign Host", ({**own, "Host": "evil.example"}, body([data_url(photos[0])]))),
    ]
    oversized = [
        ("PNG of 30000 x 30000", (own, body([data_url(png_declaring(30000, 30000), "png")]))),
        ("9 MB upload", (own, body(["A" * (12 * 1024 * 1024)]))),  # 12 MB of base64: 9 MB of data
    ]
    return {"good": good, "bad": bad, "oversized": oversized}


def page_call(port, request):
    headers, body = request
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/api/generate", body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            return str(response.status), None
        return "200", json.loads(data)["image"].encode()
    finally:
        connection.close()


# The load ----------------------------------------------------------------------------------------


def load(call, requests, expected, clients, seconds, seed=0):
    """Clients threads for seconds; returns the statistics."""
    mix = [("good", item) for item in requests["good"]] * 4 + [("bad", item) for item in requests["bad"]]
    mix += [("oversized", item) for item in requests["oversized"]]
    outcomes, latencies, mismatches, errors = collections.Counter(), collections.defaultdict(list), [], collections.Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index):
        rng = np.random.default_rng([seed, index])
        while time.monotonic() < stop_at:
            kind, (name, request) = mix[rng.integers(len(mix))]
            start = time.perf_counter()
            try:
                status, answer = call(request)
            except Exception as error:  # noqa: BLE001  (a broken connection is a result to count)
                status, answer = f"client error {type(error).__name__}", None
            elapsed = time.perf_counter() - start
            with lock:
                outcomes[(kind, status)] += 1
                latencies[kind].append(elapsed)
                if kind == "good" and answer != expected[name]:
                    mismatches.append(name)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, latencies, mismatches, time.perf_counter() - started, errors


def report(name, process, idle_kilobytes, statistics):
    outcomes, latencies, mismatches, elapsed, _ = statistics
    total = sum(outcomes.values())
    peak = memory_kilobytes(process.pid, "VmHWM")
    print(f"\n{name}: {total} requests in {elapsed:.1f} s = {total / elapsed:.1f} requests/s")
    for kind in ("good", "bad", "oversized"):
        values = np.asarray(latencies.get(kind, [0.0])) * 1e3
        counts = ", ".join(f"{status}: {count}" for (which, status), count in sorted(outcomes.items()) if which == kind)
        print(f"  {kind:9s} p50 {np.percentile(values, 50):8.1f} ms  p99 {np.percentile(values, 99):8.1f} ms  answers {counts}")
    print(f"  good answers differing from the quiet run's: {len(mismatches)}")
    print(f"  resident memory: idle {idle_kilobytes / 1024:.0f} MB, peak under load {peak / 1024:.0f} MB "
          f"(+{(peak - idle_kilobytes) / 1024:.0f} MB)")  # fmt: skip
    key = name.split()[0]
    print(f"{key}_requests_per_s: {total / elapsed:.2f}")
    print(f"{key}_peak_minus_idle_mb: {(peak - idle_kilobytes) / 1024:.0f}")
    print(f"{key}_good_answers_differing: {len(mismatches)}")


def wait_for(process, probe, what, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.stderr.read()}")
        if probe():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not start within {timeout} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default=None, help="a trained generator (default: the quickstart's size, fresh weights)")
    parser.add_argument("--skip-page", action="store_true", help="only the gRPC server (the page needs the BlazePose models)")
    arguments = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    config = load_config(REPOSITORY / "configs" / "quickstart.yaml")
    generator = load_generator(arguments.model) if arguments.model else generator_from_config(config)
    export_keras(generator, work / "run" / "generator.keras")
    export_saved_model(generator, work / "models", "pnr")
    data = work / "synthetic"
    write_synthetic_dataset(data, num_identities=6, images_per_identity=4, seed=1)
    annotations = read_annotations(data / "annotations.csv")
    pairs = read_pairs(data / "pairs-test.csv")[:6]
    from pnr_tf.visualize import read_rgb

    samples = [{"source_image": read_rgb(data / "images" / source)[None], "source_keypoints": annotations[source][None].astype(np.float32),
                "target_keypoints": annotations[target][None].astype(np.float32)} for source, target in pairs]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    print(f"machine: {os.cpu_count()} cores; model {arguments.model or 'quickstart size, fresh weights'}; "
          f"{arguments.clients} clients for {arguments.seconds:.0f} s per server")  # fmt: skip

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pnr_tf.serving.dev_server", "--model-base-path", str(work / "models" / "pnr"),
                               "--port", str(port)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        requests = grpc_requests(samples, generator.contract.image_size)
        wait_for(server, lambda: grpc_call(stub, requests["good"][0][1])[0] == "OK", "the dev server")
        expected = {name: grpc_call(stub, message)[1] for name, message in requests["good"]}
        idle = memory_kilobytes(server.pid, "VmRSS")
        reset_peak_memory(server.pid)
        statistics = load(lambda message: grpc_call(stub, message), requests, expected, arguments.clients, arguments.seconds)
        report("grpc dev server", server, idle, statistics)
        channel.close()
    finally:
        server.terminate()
        server.wait(timeout=60)

    if arguments.skip_page:
        return 0
    port = free_port()
    page = subprocess.Popen([sys.executable, "-m", "pnr_tf.app", "--model", str(work / "run"), "--port", str(port)], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        photos = [(data / "images" / source).read_bytes() for source, _ in pairs]
        requests = page_requests(photos, annotations[pairs[0][1]], port)

        def page_is_up():
            try:
                return page_call(port, requests["good"][0][1])[0] == "200"
            except OSError:
                return False

        wait_for(page, page_is_up, "the page")
        # Good requests are those the page serves when quiet: the pose estimator finds no person in some synthetic photos.
        expected = {name: page_call(port, request)[1] for name, request in requests["good"]}
        requests["good"] = [(name, request) for name, request in requests["good"] if expected[name] is not None]
        idle = memory_kilobytes(page.pid, "VmRSS")
        reset_peak_memory(page.pid)
        statistics = load(lambda request: page_call(port, request), requests, expected, arguments.clients, arguments.seconds)
        report("page (pnr_tf.app)", page, idle, statistics)
    finally:
        page.terminate()
        page.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
