"""The pose-transfer page: its JSON API over a real server, and the page itself in headless Chromium.

Page tests need Chromium (Debian: apt-get install chromium) and the BlazePose models (python -m
pnr_tf.pose.fetch); they skip cleanly without. The page test leaves a screenshot in test-output/.
"""

import base64
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pnr_tf.app import create_app
from pnr_tf.app.service import MAX_IMAGE_BYTES
from pnr_tf.app.service import PageService
from pnr_tf.app.service import built_in_poses
from pnr_tf.data.annotations import read_annotations
from pnr_tf.inference import PoseTransfer
from pnr_tf.pose import models as pose_models
from tests.helpers import png_declaring
from tests.helpers import reference_generate

REPOSITORY = Path(__file__).resolve().parents[2]
OUTPUT = REPOSITORY / "test-output"
BROWSER_ARGUMENTS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


class FakeEstimator:
    """Keypoints by photo size: lets the API tests run without the BlazePose models."""

    def __init__(self, keypoints):
        self.keypoints = keypoints

    def estimate(self, photo, name="the photo"):
        from pnr_tf.pose import PersonPose

        return PersonPose(self.keypoints, 1.0, 1)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(service, **app_options):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, **app_options), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def model(tiny_model_run):
    return PoseTransfer(tiny_model_run[1])


@pytest.fixture(scope="module")
def api(model, synthetic_root):
    """A server whose estimator returns a fixed pose (the first synthetic annotation)."""
    keypoints = next(iter(read_annotations(synthetic_root / "annotations.csv").values())).astype(np.float32)
    server, thread, address = start_server(PageService(model, FakeEstimator(keypoints)))
    yield address, keypoints
    server.should_exit = True
    thread.join(timeout=10)


def post(address, payload, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(f"{address}/api/generate", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def data_url(path):
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def data_url_of(data):
    return "data:image/png;base64," + base64.b64encode(data).decode()


def decode(url):
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_the_gallery_lists_poses_in_the_models_frame(api):
    address, _ = api
    with urllib.request.urlopen(f"{address}/api/poses") as response:
        gallery = json.loads(response.read())
    assert gallery["image_size"] == [128, 64] and len(gallery["poses"]) == 12 and [1, 2] in gallery["bones"]
    expected = built_in_poses((128, 64))["pose 1"]
    assert gallery["poses"][0]["keypoints"] == [None if (point < 0).any() else point.tolist() for point in expected]


def test_a_generation_equals_the_model_and_bad_requests_get_messages(api, model, synthetic_root):
    address, keypoints = api
    photo_path = next((synthetic_root / "images").iterdir())
    target = built_in_poses((128, 64))["pose 3"]
    target_list = [None if (point < 0).any() else point.tolist() for point in target]
    status, answer = post(address, {"sources": [data_url(photo_path)], "target_keypoints": target_list})
    assert status == 200, answer
    from pnr_tf.visualize import read_rgb

    # The photo is the model's 128 x 64 and its person fills it (a synthetic dataset image): it is taken as it is.
    assert np.ptp(keypoints[(keypoints >= 0).all(axis=1), 0]) >= 0.6 * 128
    _, expected = reference_generate(model.generator, read_rgb(photo_path)[None, None], keypoints[None, None], target[None])
    assert np.abs(decode(answer["image"]).astype(int) - expected[0].astype(int)).max() <= 1
    text = base64.b64encode(b"hello, not an image").decode()
    bomb = data_url_of(png_declaring(30000, 30000))  # 2.6 GB decoded, a few hundred bytes sent
    huge = "A" * (MAX_IMAGE_BYTES * 4 // 3 + 8)
    cases = [
        ({"sources": [], "target_keypoints": target_list}, 422, "add at least one photo"),
        ({"sources": [data_url(photo_path)] * 6, "target_keypoints": target_list}, 413, "at most 5 photos"),
        ({"sources": [text], "target_keypoints": target_list}, 415, "photo 1 is not a JPEG, PNG or WebP image"),
        ({"sources": ["%%%"], "target_keypoints": target_list}, 422, "not base64"),
        ({"sources": [huge], "target_keypoints": target_list}, 413, "larger than 8 MB"),
        ({"sources": [bomb], "target_keypoints": target_list}, 413, "photo 1 is 30000 x 30000 pixels; at most 4096 a side"),
        ({"sources": [data_url_of(png_declaring(5000, 10))], "target_keypoints": target_list}, 413, "at most 4096 a side"),
        ({"sources": [data_url(photo_path)], "target_keypoints": [[1, 2]] * 3}, 422, "expected 18 [y, x] pairs"),
        ({"sources": [data_url(photo_path)], "target_keypoints": [None] * 18}, 422, "the target pose needs at least one visible keypoint"),
        (b"{not json", 400, "not JSON"),
        (b'{"sources": [], "target_keypoints": ' + b"1" * 5000 + b"}", 400, "not JSON"),  # Python refuses > 4300 digits
        (b"[" * 100_000 + b"]" * 100_000, 400, "not JSON"),
        ({"sources": [data_url(photo_path)], "target_keypoints": [[10**400, 3]] + target_list[1:]}, 422, "target_keypoints[0]"),
        ({"sources": [data_url(photo_path)], "target_keypoints": [[True, 3]] + target_list[1:]}, 422, "target_keypoints[0]"),
        ({"sources": [data_url(photo_path)], "target_keypoints": [[float("nan"), 3]] + target_list[1:]}, 422, "target_keypoints[0]"),
    ]
    for payload, expected_status, message in cases:
        status, answer = post(address, payload)
        assert status == expected_status and message in answer["error"], (status, answer)


def test_only_the_page_itself_may_generate(api, synthetic_root):
    """Cross-site posts, DNS rebinding (a foreign Host) and form-like bodies are refused before any work."""
    address, _ = api
    photo_path = next((synthetic_root / "images").iterdir())
    request = {"sources": [data_url(photo_path)], "target_keypoints": [None] * 18}
    own_origin = address  # http://127.0.0.1:<port>
    # A refused request never reaches the model: a valid-pose check would answer 422.
    cases = [
        ({"Origin": "http://evil.example"}, 403, "not accepted"),
        ({"Origin": "null"}, 403, "not accepted"),
        ({"Content-Type": "text/plain"}, 415, "application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 415, "application/json"),
        ({"Origin": own_origin}, 422, "the target pose needs"),  # the page's own origin passes on to the checks
    ]
    for headers, expected_status, message in cases:
        status, answer = post(address, request, headers)
        assert status == expected_status and message in answer["error"], (headers, status, answer)
    for host in ("evil.example", "evil.example:80", "192.168.1.7"):  # DNS rebinding: the attacker's name in Host
        for path, body in (("/api/generate", json.dumps(request).encode()), ("/api/poses", None), ("/", None)):
            refused = urllib.request.Request(f"{address}{path}", data=body, headers={"Host": host, "Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as raised:
                urllib.request.urlopen(refused, timeout=30)
            assert raised.value.code == 400, (host, path)
    with urllib.request.urlopen(urllib.request.Request(f"{address}/api/poses", headers={"Host": "localhost"}), timeout=30) as response:
        assert response.status == 200


class HeldService:
    """Generations that wait for the test's word, counting how many run at once."""

    def __init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most_running = self.started = 0

    def gallery(self):
        return []

    def generate(self, payload):
        with self.lock:
            self.running += 1
            self.started += 1
            self.most_running = max(self.most_running, self.running)
        self.release.wait(timeout=60)
        with self.lock:
            self.running -= 1
        return {"answer": payload["n"]}


def test_requests_beyond_the_admitted_get_503_before_their_bodies_are_read_and_generations_queue():
    service = HeldService()
    server, thread, address = start_server(service, max_requests=3, generations_at_once=2)
    try:
        answers = {}
        held = [threading.Thread(target=lambda n=n: answers.__setitem__(n, post(address, {"n": n}))) for n in range(3)]
        for worker in held:
            worker.start()
        for _ in range(200):  # two generations run, the third waits for a slot
            if service.started == 2:
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert service.started == 2
        status, answer = post(address, b"x" * 1000)  # refused before its (non-JSON) body is read: 503, not 400
        assert status == 503 and "busy" in answer["error"]
        service.release.set()
        for worker in held:
            worker.join(timeout=60)
        assert answers == {n: (200, {"answer": n}) for n in range(3)} and service.most_running == 2
        assert post(address, {"n": 7}) == (200, {"answer": 7})  # admissions are given back
    finally:
        service.release.set()
        server.should_exit = True
        thread.join(timeout=10)


def test_allowed_hosts_are_loopback_the_bound_address_and_the_named_ones():
    from pnr_tf.app import allowed_hosts

    assert allowed_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts("0.0.0.0", ["studio.lan"]) == ["localhost", "127.0.0.1", "[::1]", "studio.lan"]
    assert allowed_hosts("10.0.0.5") == ["localhost", "127.0.0.1", "[::1]", "10.0.0.5"]
    assert allowed_hosts("fe80::1") == ["localhost", "127.0.0.1", "[::1]", "[fe80::1]"]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no Chromium: the page test needs one (Debian: apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGUMENTS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page_server(model):
    if pose_models.cached_models() is None:
        pytest.skip("the BlazePose models are not in the cache: run python -m pnr_tf.pose.fetch")
    from pnr_tf.pose import PoseEstimator

    server, thread, address = start_server(PageService(model, PoseEstimator(fetch=False)))
    yield address
    server.should_exit = True
    thread.join(timeout=10)


def test_the_page_in_chromium_turns_a_market_photo_into_a_new_pose(browser, page_server, shared_data, tmp_path):
    photo = sorted((shared_data / "market_subset" / "images").iterdir())[7]  # its keypoints stay unknown to the page
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(page_server)
    page.wait_for_selector("#gallery canvas")
    page.set_input_files("#photos", str(photo))
    page.wait_for_selector("#thumbs img")
    page.click("#gallery canvas:nth-child(4)")
    # Drag the right wrist of the chosen pose 10 model pixels to the left in the editor.
    pose = page.evaluate("target")
    box = page.locator("#editor").bounding_box()
    wrist_y, wrist_x = pose[4]
    # Model pixel (r, c) is the editor's 4 x 4 square from (4c, 4r): a joint is drawn at its centre.
    page.mouse.move(box["x"] + (wrist_x + 0.5) * 4, box["y"] + (wrist_y + 0.5) * 4)
    page.mouse.down()
    page.mouse.move(box["x"] + (wrist_x - 10 + 0.5) * 4, box["y"] + (wrist_y + 0.5) * 4, steps=5)
    page.mouse.up()
    assert page.evaluate("target")[4][1] == pytest.approx(wrist_x - 10, abs=0.3)
    page.click("#generate")
    page.wait_for_selector("#generated", timeout=120_000)
    assert page.text_content("#error") == ""
    generated = decode(page.get_attribute("#generated", "src"))
    assert generated.shape == (128, 64, 3) and generated.std() > 10
    assert page.locator("#download").get_attribute("href").startswith("data:image/png;base64,")
    assert page.locator("#sources img").count() == 1
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "page.png"), full_page=True)

    # A bad upload: the error is shown in the page, nothing is generated.
    page.reload()
    page.wait_for_selector("#gallery canvas")
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a picture")
    page.set_input_files("#photos", str(bad))
    page.wait_for_selector("#thumbs img")
    page.click("#generate")
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
    assert "is not a JPEG, PNG or WebP image" in page.text_content("#error")
    assert page.locator("#generated").count() == 0
    page.screenshot(path=str(OUTPUT / "page_error.png"), full_page=True)
    page.close()
