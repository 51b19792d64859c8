"""What the serve tests share: the Python API's masks for the same actions a page or a client takes."""

import io
import os
import threading

import numpy as np
from PIL import Image

from sam2_jax.serve.app import create_app
from sam2_jax.utils.visualize import label_map
from tests.reference import REPO

EXAMPLES = os.path.join(REPO, "examples")
BEDROOM = os.path.join(EXAMPLES, "bedroom")


def serve_http(server):
    """The app on a free loopback port in a thread: ``(base_url, stop)``."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, create_app(server), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        thread.join()

    return f"http://127.0.0.1:{httpd.server_port}", stop


def python_api_label_maps(model, video: str, actions) -> dict[int, np.ndarray]:
    """What the Python API gives for the same actions, in order: ``("prompt", frame, obj_id, points, box)`` (the
    object's whole prompt on that frame, as the page sends it) and ``("propagate", direction)`` (forward and/or
    backward from the first prompted frame, as the server does). Returns the label map of every frame shown."""
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    p = SAM2VideoPredictor(model)
    p.progress = False
    state = p.init_state(video)
    out, prompted = {}, set()
    for kind, *args in actions:
        if kind == "prompt":
            frame, obj, points, box = args
            pts = np.array([q[:2] for q in points], np.float32) if points else None
            labels = np.array([q[2] for q in points], np.int32) if points else None
            box = np.array(box, np.float32) if box is not None else None
            _, ids, logits = p.add_new_points_or_box(state, frame, obj, points=pts, labels=labels, box=box)
            out[frame] = dict(zip(ids, logits[:, 0] > 0, strict=True))
            prompted.add(frame)
            continue
        (direction,) = args
        start = min(prompted)
        for reverse in {"both": (False, True), "forward": (False,), "backward": (True,)}[direction]:
            for t, ids, logits in p.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                out[t] = dict(zip(ids, logits[:, 0] > 0, strict=True))
    state.images.close()
    hw = (state.video_height, state.video_width)
    return {t: label_map(m, hw) for t, m in out.items()}


def palette_maps(files: dict[str, bytes]) -> dict[int, np.ndarray]:
    """The ``palette/<frame>.png`` files of a downloaded masks.zip as ``{frame: object-id map}``."""
    return {int(n[8:13]): np.asarray(Image.open(io.BytesIO(b))) for n, b in files.items() if n.startswith("palette/")}
