"""The ``sam2-jax serve`` page in a real browser: Debian's Chromium driven by Playwright (which downloads no browser of
its own) against a server started on a free loopback port.

Open the bedroom frames, click, see the mask drawn on the canvas (its pixels equal the Python API's mask for the same
click), track the whole video and see the progress reach the end, correct a frame with a negative click, track again,
download the masks: equal, frame by frame, to the Python API's for the same actions. Then a second object by a
dragged box (drawn as the Python API draws it), removed again. ``SAM2_JAX_SCREENSHOT=PATH``
keeps the page's screenshot (the README's picture comes from this test).
"""

import os
import shutil
import zipfile

import numpy as np
import pytest

from sam2_jax.cli.common import random_model
from sam2_jax.serve.app import Server
from sam2_jax.utils.visualize import PALETTE
from tests.serve_helpers import BEDROOM, EXAMPLES, palette_maps, python_api_label_maps, serve_http

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As this machine kind's probe starts it: no sandbox (root), no GPU, and none of Chromium's calls home (refused here)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Chromium (scripts/setup_env.sh installs Debian's)"),
]


@pytest.fixture(scope="module")
def page_and_server():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    model = random_model("sam2.1_hiera_t", 256, None, 0)
    server = Server(model, allow_dir=EXAMPLES)
    base, stop = serve_http(server)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 720}, accept_downloads=True)
        # the first click and the first track compile (seconds here, a minute on a loaded 2-core CI machine)
        page.set_default_timeout(300_000)
        page.goto(base + "/")
        yield page, model
        browser.close()
    stop()
    server.shutdown()


def canvas_ids(page) -> np.ndarray:
    """The mask canvas read back as object ids: a pixel is object ``o`` where its colour is tab10's ``o % 10``."""
    w, h, flat = page.evaluate(
        """() => { const c = document.getElementById('mask');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   return [c.width, c.height, Array.from(d)]; }"""
    )
    rgba = np.array(flat, np.uint8).reshape(h, w, 4)
    ids = np.zeros((h, w), np.uint8)
    for o in range(1, 11):
        hit = (rgba[..., 3] == 255) & np.all(rgba[..., :3] == PALETTE[o % 10], axis=-1)
        ids[hit] = o
    assert np.all((rgba[..., 3] == 0) | (ids > 0)), "a pixel of the mask canvas is neither empty nor an object"
    return ids


def click(page, x: float, y: float, shift: bool = False) -> None:
    """Click the image pixel (x, y) of the 480x270 frame, wherever the canvas is on the page and however scaled."""
    box = page.locator("#prompts").bounding_box()
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(box["x"] + x * box["width"] / 480, box["y"] + y * box["height"] / 270)
    if shift:
        page.keyboard.up("Shift")


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag from one image pixel to another (a box prompt)."""
    box = page.locator("#prompts").bounding_box()
    sx, sy = box["width"] / 480, box["height"] / 270
    page.mouse.move(box["x"] + start[0] * sx, box["y"] + start[1] * sy)
    page.mouse.down()
    page.mouse.move(box["x"] + end[0] * sx, box["y"] + end[1] * sy, steps=8)
    page.mouse.up()


def wait_ready(page) -> None:
    page.wait_for_function("() => document.body.dataset.status === 'ready'")


def track(page) -> str:
    page.evaluate("() => { document.getElementById('progress-text').textContent = ''; }")
    page.click("#propagate")
    page.wait_for_function("() => document.getElementById('progress-text').textContent.includes('done')")
    wait_ready(page)
    return page.inner_text("#progress-text")


def test_click_track_correct_download_in_chromium(page_and_server, tmp_path):
    page, model = page_and_server
    page.wait_for_selector("#files option[value=bedroom]", state="attached")
    page.select_option("#files", "bedroom")
    page.click("#open-path")
    page.wait_for_function("() => document.getElementById('name').textContent.startsWith('bedroom')")
    wait_ready(page)

    # a click on frame 0: the mask appears on the canvas, equal to the Python API's for the same click
    click(page, 200, 150)
    page.wait_for_function("() => window.sam2.masks[0] && document.body.dataset.maskFrame === '0'")
    wait_ready(page)
    first = page.evaluate("() => window.sam2.prompts[0][1]")
    assert len(first["points"]) == 1 and first["points"][0][2] == 1
    assert abs(first["points"][0][0] - 200) < 1 and abs(first["points"][0][1] - 150) < 1
    actions = [("prompt", 0, 1, first["points"], None)]
    want = python_api_label_maps(model, BEDROOM, actions)
    drawn = canvas_ids(page)
    np.testing.assert_array_equal(drawn, want[0])
    assert 0 < (drawn > 0).sum() < drawn.size, "the random model drew nothing or everything: the test shows nothing"

    # track the whole video: the progress reaches the end, the last frame shown is drawn
    assert track(page) == "4 / 4 done"
    actions.append(("propagate", "both"))

    # correct frame 2 with a negative (shift) click, then track again
    assert page.inner_text("#frame-label") == "frame 3 / 3"  # the last frame tracked is shown
    page.click("#prev")
    page.wait_for_function("() => document.getElementById('frame-label').textContent === 'frame 2 / 3'")
    wait_ready(page)
    before = page.evaluate("() => window.sam2.masks[2]")
    click(page, 120.5, 60, shift=True)
    page.wait_for_function(f"() => window.sam2.masks[2] !== {before!r}")
    wait_ready(page)
    corrected = page.evaluate("() => window.sam2.prompts[2][1]")
    assert [p[2] for p in corrected["points"]] == [0]
    actions.append(("prompt", 2, 1, corrected["points"], None))
    assert track(page) == "4 / 4 done"
    actions.append(("propagate", "both"))

    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot))
    if os.environ.get("SAM2_JAX_SCREENSHOT"):
        shutil.copy(shot, os.environ["SAM2_JAX_SCREENSHOT"])

    # download the masks: every frame equals the Python API's after the same actions
    with page.expect_download() as download:
        page.click("#dl-masks")
    path = tmp_path / "masks.zip"
    download.value.save_as(str(path))
    with zipfile.ZipFile(path) as z:
        got = palette_maps({n: z.read(n) for n in z.namelist()})
    want = python_api_label_maps(model, BEDROOM, actions)
    assert sorted(got) == sorted(want) == [0, 1, 2, 3]
    for t in want:
        np.testing.assert_array_equal(got[t], want[t], err_msg=f"frame {t}")
    # what the canvas shows now (frame 3, the last tracked) is the downloaded frame
    page.wait_for_function("() => document.body.dataset.maskFrame === '3'")
    np.testing.assert_array_equal(canvas_ids(page), got[3])

    # a second object by a dragged box on frame 3: drawn as the Python API draws it; then removed again
    page.click("#add-object")
    page.wait_for_selector("#objects button.current[data-obj='2']")
    before = page.evaluate("() => window.sam2.masks[3]")
    drag(page, (300, 20), (460, 140))
    page.wait_for_function(f"() => window.sam2.masks[3] !== {before!r}")
    wait_ready(page)
    second = page.evaluate("() => window.sam2.prompts[3][2]")
    assert second["points"] == [] and abs(second["box"][0] - 300) < 1 and abs(second["box"][3] - 140) < 1
    want = python_api_label_maps(model, BEDROOM, [*actions, ("prompt", 3, 2, [], second["box"])])
    drawn = canvas_ids(page)
    np.testing.assert_array_equal(drawn, want[3])
    assert np.any(drawn == 2), "the box drew nothing: the test shows nothing"
    page.click("#remove-object")
    page.wait_for_function("() => !window.sam2.objects.includes(2) && document.body.dataset.status === 'ready'")
    page.wait_for_function("() => document.body.dataset.maskFrame === '3'")
    np.testing.assert_array_equal(canvas_ids(page), got[3])


def test_a_corrupt_upload_shows_one_message_and_the_page_goes_on(page_and_server, tmp_path):
    page, _ = page_and_server
    bad = tmp_path / "broken.jpg"
    with open(os.path.join(EXAMPLES, "truck.jpg"), "rb") as f:
        bad.write_bytes(f.read()[:2000])
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("cannot read image 'broken.jpg'")
    # the page goes on: the truck opens as an image and takes a click
    page.set_input_files("#upload", os.path.join(EXAMPLES, "truck.jpg"))
    page.wait_for_function("() => document.getElementById('name').textContent.startsWith('truck.jpg')")
    wait_ready(page)
    assert page.is_hidden("#error") and page.is_visible("#auto") and page.is_hidden("#propagate")
