"""``sam2-jax serve``: the API against the Python API (same masks for the same clicks), bad input and abuse, sessions,
a client that goes away mid-propagation, and a small load run. The page itself in Chromium: tests/test_serve_browser.py.

Random tiny weights at 256 px keep it fast: the masks are meaningless, but equal or not all the same.
"""

import io
import os
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from sam2_jax.cli.common import random_model
from sam2_jax.serve.app import Server, create_app
from sam2_jax.serve.client import Client, load_run
from tests.serve_helpers import BEDROOM, EXAMPLES, palette_maps, python_api_label_maps, serve_http

CLICKS = [  # (frame, obj_id, points, box): two objects on frame 0, a correction on frame 2
    (0, 1, [[200.0, 150.0, 1]], None),
    (0, 2, [], [300.0, 20.0, 460.0, 140.0]),
    (2, 1, [[200.0, 150.0, 1], [120.5, 60.0, 0]], None),
]


@pytest.fixture(scope="module")
def model():
    return random_model("sam2.1_hiera_t", 256, None, 0)


@pytest.fixture
def server(model, tmp_path):
    s = Server(model, allow_dir=EXAMPLES, max_sessions=4, idle_timeout_s=900)
    yield s
    s.shutdown()


@pytest.fixture
def client(server):
    return create_app(server).test_client()


def sid_of(client) -> str:
    return client.post("/api/sessions").json["session"]


def test_masks_equal_the_python_api_for_the_same_clicks(model, server):
    """Open the bedroom frames by path, two objects and a correction, track the whole video, download: every frame's
    palette PNG equals the Python API's label map, and each object's PNG its mask."""
    base, stop = serve_http(server)
    try:
        c = Client(base)
        info = c.open_path("bedroom")
        assert (info["kind"], info["num_frames"], info["width"], info["height"]) == ("video", 4, 480, 270)
        for frame, obj, points, box in CLICKS:
            shown = c.prompt(frame, obj, points, box)
            assert shown["frame"] == frame and shown["mask"]
        events = list(c.propagate("both"))
        assert [e["done"] for e in events[:-1]] == [1, 2, 3, 4] and events[-1]["end"]["total"] == 4
        files = c.masks_zip()
        with c._request("GET", f"/api/sessions/{c.sid}/download/overlay") as r:
            overlay = r.read()
        # remove object 2: gone from every frame's masks, object 1's pixels kept
        assert c._session("POST", "/remove_object", {"obj_id": 2})["objects"] == [1]
        without = palette_maps(c.masks_zip())
    finally:
        stop()
    want = python_api_label_maps(model, BEDROOM, [("prompt", *c) for c in CLICKS] + [("propagate", "both")])
    import av

    with av.open(io.BytesIO(overlay)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    for t in want:
        np.testing.assert_array_equal(without[t] == 1, want[t] == 1)
        assert not np.any(without[t] == 2)
    got = palette_maps(files)
    assert sorted(got) == sorted(want) == [0, 1, 2, 3]
    for t in want:
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"frame {t}")
        for o in (1, 2):
            obj = np.asarray(Image.open(io.BytesIO(files[f"objects/{o}/{t:05d}.png"]))) > 0
            np.testing.assert_array_equal(obj[want[t] == o], True)
    assert len(np.unique(np.stack(list(want.values())))) > 1, "the random model drew nothing: the test shows nothing"


def test_image_click_and_mask_generator_equal_the_python_api(model, client):
    from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

    sid = sid_of(client)
    assert client.post(f"/api/sessions/{sid}/open", json={"path": "truck.jpg"}).json["kind"] == "image"
    client.post(f"/api/sessions/{sid}/prompt", json={"obj_id": 1, "points": [[450, 330, 1]]})
    files = zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/download/masks.zip").data))
    got = np.asarray(Image.open(files.open("objects/1/00000.png"))) > 0
    image = np.asarray(Image.open(os.path.join(EXAMPLES, "truck.jpg")).convert("RGB"))
    p = SAM2ImagePredictor(model)
    p.set_image(image)
    masks, scores, _ = p.predict(point_coords=np.array([[450, 330]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(got, masks[np.argmax(scores)] > 0)

    r = client.post(f"/api/sessions/{sid}/auto", json={"points_per_side": 4, "pred_iou_thresh": 0.0})
    want = SAM2AutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=0.0).generate(image)
    assert r.status_code == 200 and r.json["count"] == len(want) > 0
    assert r.json["areas"] == sorted((int(m["area"]) for m in want), reverse=True)
    bad = client.post(f"/api/sessions/{sid}/auto", json={"points_per_side": 1000})
    assert bad.status_code == 400 and "points_per_side" in bad.json["error"]


def test_no_path_outside_allow_dir(server, client, tmp_path, model):
    sid = sid_of(client)
    outside = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    for path in ["../README.md", "/etc/passwd", str(outside), "bedroom/../../README.md", "..", "bedroom/../.."]:
        r = client.post(f"/api/sessions/{sid}/open", json={"path": path})
        assert r.status_code == 403, (path, r.json)
        assert "outside" in r.json["error"]
    # a link inside the folder that points out of it
    allow = tmp_path / "allow"
    allow.mkdir()
    (allow / "link.jpg").symlink_to(outside)
    linked = Server(model, allow_dir=str(allow))
    try:
        r = create_app(linked).test_client()
        s2 = r.post("/api/sessions").json["session"]
        got = r.post(f"/api/sessions/{s2}/open", json={"path": "link.jpg"})
        assert got.status_code == 403, got.json
    finally:
        linked.shutdown()
    # a server started without --allow-dir reads no path at all
    closed = Server(model)
    try:
        r = create_app(closed).test_client()
        s3 = r.post("/api/sessions").json["session"]
        got = r.post(f"/api/sessions/{s3}/open", json={"path": "truck.jpg"})
        assert got.status_code == 403 and "--allow-dir" in got.json["error"]
        assert r.get("/api/files").json == {"allow_dir": False, "files": []}
    finally:
        closed.shutdown()


def _upload(client, sid, name: str, data: bytes):
    return client.post(
        f"/api/sessions/{sid}/open", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data"
    )


def test_bad_uploads_get_one_message_and_the_session_stays_usable(model, client, tmp_path):
    from sam2_jax.utils.visualize import write_video

    sid = sid_of(client)
    assert client.post(f"/api/sessions/{sid}/open", json={"path": "bedroom"}).status_code == 200
    with open(os.path.join(EXAMPLES, "truck.jpg"), "rb") as f:
        jpeg = f.read()
    clip = tmp_path / "clip.mp4"
    write_video([Image.fromarray(np.full((64, 96, 3), 40 * i, np.uint8)) for i in range(6)], clip)
    mp4 = clip.read_bytes()
    cases = [
        ("notes.txt", b"hello", 415, "upload an image"),
        ("photo.jpg", jpeg[: len(jpeg) // 3], 400, "cannot read image"),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "cannot read image"),
        ("clip.mp4", mp4[: len(mp4) // 2], 400, "cannot read video"),
        ("clip.mp4", b"\0" * 4096, 400, "cannot read video"),
    ]
    for name, data, status, words in cases:
        r = _upload(client, sid, name, data)
        assert r.status_code == status and words in r.json["error"], (name, r.status_code, r.json)
        assert "\n" not in r.json["error"]
        # the session still has the bedroom frames and takes a click
        assert client.get(f"/api/sessions/{sid}").json["name"] == "bedroom"
    ok = client.post(f"/api/sessions/{sid}/prompt", json={"frame": 1, "obj_id": 3, "points": [[10, 10, 1]]})
    assert ok.status_code == 200 and ok.json["objects"] == [3]
    # a good upload replaces it
    r = _upload(client, sid, "clip.mp4", mp4)
    assert r.status_code == 200 and (r.json["kind"], r.json["num_frames"]) == ("video", 6)
    # too large for the server's limit
    small = Server(model, max_upload_mb=0.01)
    try:
        c2 = create_app(small).test_client()
        s2 = c2.post("/api/sessions").json["session"]
        r = _upload(c2, s2, "truck.jpg", jpeg)
        assert r.status_code == 413 and "0.01 MB" in r.json["error"]
    finally:
        small.shutdown()


def test_prompts_are_checked_as_the_python_api_checks_them(client):
    sid = sid_of(client)
    no_video = client.post(f"/api/sessions/{sid}/prompt", json={"frame": 0, "obj_id": 1, "points": [[1, 1, 1]]})
    assert no_video.status_code == 400 and "open an image or a video" in no_video.json["error"]
    client.post(f"/api/sessions/{sid}/open", json={"path": "bedroom"})
    assert client.get(f"/api/sessions/{sid}/propagate").status_code == 400  # nothing prompted yet
    bad = [
        ({"frame": 0, "obj_id": 1, "points": [[481, 10, 1]]}, "outside the 480x270"),
        ({"frame": 0, "obj_id": 1, "points": [[10, 10, 2]]}, "label must be 1"),
        ({"frame": 4, "obj_id": 1, "points": [[10, 10, 1]]}, "past the end"),
        ({"frame": 0, "obj_id": 0, "points": [[10, 10, 1]]}, "obj_id must be in 1..255"),
        ({"frame": 0.5, "obj_id": 1, "points": [[10, 10, 1]]}, "'frame' must be an integer"),
        ({"frame": 0, "obj_id": 1, "points": [[10, 10]]}, "points must be a list"),
        ({"frame": 0, "obj_id": 1, "box": [50, 50, 10, 10]}, "box"),
        ({"frame": 0, "obj_id": "a", "points": [[10, 10, 1]]}, "'obj_id' must be an integer"),
    ]
    for body, words in bad:
        r = client.post(f"/api/sessions/{sid}/prompt", json=body)
        assert r.status_code == 400 and words in r.json["error"], (body, r.json)
    assert client.post(f"/api/sessions/{sid}/prompt", data="not json").status_code == 400
    assert client.get(f"/api/sessions/{sid}/propagate?direction=sideways").status_code == 400
    assert client.get(f"/api/sessions/{sid}/frames/9").status_code == 404
    assert client.get("/api/sessions/nope").status_code == 404


def test_session_cap_and_idle_timeout(model):
    server = Server(model, max_sessions=2, idle_timeout_s=0.3)
    try:
        c = create_app(server).test_client()
        a, _ = sid_of(c), sid_of(c)
        r = c.post("/api/sessions")
        assert r.status_code == 429 and "maximum of 2 sessions" in r.json["error"]
        time.sleep(1.0)  # both idle past the timeout: the reaper closes them
        assert c.get(f"/api/sessions/{a}").status_code == 404
        assert len(server.sessions) == 0 and c.post("/api/sessions").status_code == 200
    finally:
        server.shutdown()


def test_a_client_gone_mid_propagation_frees_its_work(model, server):
    """The connection closes after the first tracked frame: the propagation stops (fewer frames tracked than the
    video has), the session is free again, and a full propagation then gives the Python API's masks."""
    base, stop = serve_http(server)
    try:
        c = Client(base)
        c.open_path("bedroom")
        c.prompt(0, 1, [[200.0, 150.0, 1]])
        stream = c.propagate("forward")
        first = next(stream)
        assert first["done"] == 1
        stream.close()  # closes the HTTP response: the server's next write fails
        session = server.sessions.get(c.sid)
        for _ in range(200):
            if not session.propagating:
                break
            time.sleep(0.05)
        assert not session.propagating
        assert len(session.shown) < 4, sorted(session.shown)
        assert list(c.propagate("forward"))[-1]["end"] == {"done": 4, "total": 4, "cancelled": False}
        files = c.masks_zip()
    finally:
        stop()
    want = python_api_label_maps(model, BEDROOM, [("prompt", *CLICKS[0]), ("propagate", "forward")])
    got = palette_maps(files)
    for t in want:
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"frame {t}")


def test_cancel_and_busy_session(server, client):
    sid = sid_of(client)
    client.post(f"/api/sessions/{sid}/open", json={"path": "bedroom"})
    client.post(f"/api/sessions/{sid}/prompt", json={"frame": 0, "obj_id": 1, "points": [[200, 150, 1]]})
    events = client.get(f"/api/sessions/{sid}/propagate?direction=forward").response
    next(iter(events))  # the first frame is out; the session is busy
    busy = client.post(f"/api/sessions/{sid}/prompt", json={"frame": 0, "obj_id": 1, "points": [[20, 15, 1]]})
    assert busy.status_code == 409 and "propagation is running" in busy.json["error"]
    assert client.post(f"/api/sessions/{sid}/cancel").json["cancelled"] is True
    rest = b"".join(events).decode()
    assert '"cancelled": true' in rest
    assert client.post(f"/api/sessions/{sid}/reset").json["frames_with_masks"] == []


def test_load_sessions_at_once_equal_a_solo_run(server, tmp_path):
    """4 sessions at once, each clicking a different point and tracking the clip; each gets exactly its solo run's
    masks (nothing mixed between sessions); the figures go to the log (the load run: benchmarks/serve_load.py)."""
    import resource

    def clicks_of(i):
        return [{"frame": 0, "obj_id": 1 + i % 2, "points": [[60.0 + 90 * i, 140.0, 1]]}]

    server.warm_up()  # what `sam2-jax serve` does before it listens
    base, stop = serve_http(server)
    try:
        solo = [load_run(base, 1, "bedroom", lambda _, i=i: clicks_of(i))["results"][0]["masks"] for i in range(4)]
        run = load_run(base, 4, "bedroom", clicks_of)
    finally:
        stop()
    for i, r in enumerate(run["results"]):
        assert r["frames"] == 4
        assert r["masks"] == solo[i], f"session {i} got other masks than alone"
    assert len({tuple(sorted(s.items())) for s in solo}) > 1, "all sessions drew the same: the test shows nothing"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"load: 4 sessions, {run['requests_per_s']:.2f} requests/s, click p50 {run['click_p50_s']:.3f}s "
        f"p95 {run['click_p95_s']:.3f}s, peak RSS {rss_mb:.0f} MB"
    )


def _start(cmd: list[str], env: dict):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "sam2_jax.cli", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    line = proc.stdout.readline()
    return proc, line


def test_serve_command_starts_and_answers(tmp_path):
    """``sam2-jax serve`` as a user starts it: random weights at 256 px, a free port; the page and the API answer."""
    import subprocess
    import sys
    import urllib.request

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = ["serve", "--random-weights", "--image-size", "256", "--port", "0", "--allow-dir", EXAMPLES, "--no-warm-up"]
    proc, line = _start(cmd, env)
    try:
        assert line.startswith("sam2-jax serve: http://127.0.0.1:") and "RANDOM WEIGHTS" in line, line
        url = line.split()[2].rstrip("/")
        page = urllib.request.urlopen(url + "/").read().decode()
        assert '<canvas id="mask">' in page
        assert urllib.request.urlopen(url + "/static/app.js").status == 200
        files = Client(url)._call("GET", "/api/files")["files"]
        assert {"path": "bedroom", "kind": "video", "frames": 4} in files
    finally:
        proc.terminate()
        proc.wait(30)
    bad = subprocess.run(
        [sys.executable, "-m", "sam2_jax.cli", "serve", "--random-weights", "--allow-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("sam2-jax serve: error: --allow-dir")


def test_the_readme_command_falls_back_to_random_weights_without_a_checkpoint(tmp_path):
    """The README's command (``serve --allow-dir examples``) on a machine with no checkpoint in the cache: a NOTE,
    then the server runs with random weights (``--no-random-fallback``: exit 2 instead)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", SAM2_JAX_CACHE=str(tmp_path / "cache"))
    proc, line = _start(["serve", "--allow-dir", EXAMPLES, "--port", "0", "--no-warm-up"], env)
    try:
        assert "RANDOM WEIGHTS" in line, line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "NOTE: no checkpoint for sam2.1_hiera_t" in err
    proc, line = _start(["serve", "--allow-dir", EXAMPLES, "--port", "0", "--no-random-fallback"], env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and line == "" and "no checkpoint for sam2.1_hiera_t" in err
