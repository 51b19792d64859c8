"""The server's sessions: one model for the process, one inference state per browser session, and one queue in front
of the device.

A ``Session`` owns what one browser tab works on: an image (``SAM2ImagePredictor`` features and the prompts of each
object) or a video (an ``InferenceState`` of the shared ``SAM2VideoPredictor``), and the masks the page was shown, per
frame and object (bit-packed: about 65 KB per object and frame at 960x540), which the downloads write. Every call
into the model goes through ``DeviceQueue``, one worker thread in FIFO order, so two users' XLA programs never run over
each other; a propagation takes one queue turn per chunk (``Server``'s ``chunk_size``, default one frame), so a click
of another session waits for at most one chunk of each session ahead of it.
``SessionManager`` caps the number of sessions and closes those idle for longer than the timeout.
"""

import concurrent.futures
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from sam2_jax.utils.visualize import label_map

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


class UserError(Exception):
    """Bad input from the page: shown to the user as one line; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class DeviceQueue:
    """One worker thread that runs every model call in arrival order."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-jax-device")

    def run(self, fn: Callable, *args, **kwargs) -> Any:
        return self._pool.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Session:
    """One browser session: what it opened, its prompts and the masks it was shown."""

    def __init__(self, sid: str, workdir: str) -> None:
        self.id = sid
        self.workdir = workdir
        self.lock = threading.RLock()  # one request at a time on a session's state
        self.last_used = time.monotonic()
        self.kind: str | None = None  # "image" | "video"
        self.name = ""
        self.state = None  # the video predictor's InferenceState
        self.image_predictor = None
        self.image: np.ndarray | None = None
        self.num_frames = 0
        self.hw = (0, 0)
        self.prompt_frames: dict[int, set[int]] = {}  # frame -> ids of the objects prompted there
        self.image_prompts: dict[int, dict] = {}  # obj_id -> {"points": [[x, y, label], ...], "box": [...] | None}
        self.shown: dict[int, dict[int, np.ndarray]] = {}  # frame -> obj_id -> packed bits
        self.auto_masks: list[np.ndarray] = []  # the mask generator's masks, largest first
        self.propagating = False
        self.cancel = threading.Event()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    # --- the masks shown ------------------------------------------------------------------------------------------
    def record(self, frame: int, obj_ids: list[int], masks: np.ndarray) -> None:
        """Keep the masks of every object on ``frame`` (``masks`` (O, H, W) bool, in ``obj_ids`` order)."""
        self.shown[frame] = {int(o): np.packbits(m) for o, m in zip(obj_ids, masks, strict=True)}

    def masks_at(self, frame: int, shown: dict | None = None) -> dict[int, np.ndarray]:
        """``{obj_id: (H, W) bool}`` on ``frame``, from ``shown`` (a ``snapshot()``) or the live record."""
        h, w = self.hw
        packed = (self.shown if shown is None else shown)[frame]
        return {o: np.unpackbits(p, count=h * w).reshape(h, w).astype(bool) for o, p in packed.items()}

    def label_map_at(self, frame: int, shown: dict | None = None) -> np.ndarray:
        return label_map(self.masks_at(frame, shown), self.hw)

    def snapshot(self) -> dict[int, dict[int, np.ndarray]]:
        """The record as it is now: a propagation replaces a frame's entry while a download reads the others."""
        return dict(self.shown)

    def forget_object(self, obj_id: int) -> None:
        for masks in self.shown.values():
            masks.pop(obj_id, None)

    def shown_bytes(self) -> int:
        return sum(p.nbytes for masks in list(self.shown.values()) for p in list(masks.values()))

    def object_ids(self) -> list[int]:
        if self.kind == "video" and self.state is not None:
            return [int(o) for o in self.state.obj_ids]
        return sorted(self.image_prompts)

    def close_video(self) -> None:
        if self.state is not None:
            self.state.images.close()
            self.state = None

    def close(self) -> None:
        self.close_video()
        self.image_predictor = None
        self.shown.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


class SessionManager:
    """At most ``max_sessions`` sessions; a session idle for ``idle_timeout_s`` is closed (a reaper thread)."""

    def __init__(self, max_sessions: int, idle_timeout_s: float, root: str | None = None) -> None:
        self.max_sessions = int(max_sessions)
        self.idle_timeout_s = float(idle_timeout_s)
        self.root = root or tempfile.mkdtemp(prefix="sam2-jax-serve-")
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="sam2-jax-reaper")
        self._reaper.start()

    def create(self) -> Session:
        self.reap()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise UserError(
                    f"the server has its maximum of {self.max_sessions} sessions open; try again later", 429
                )
            sid = uuid.uuid4().hex
            workdir = os.path.join(self.root, sid)
            os.makedirs(workdir)
            s = self._sessions[sid] = Session(sid, workdir)
            return s

    def get(self, sid: str) -> Session:
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise UserError("no such session (it may have been closed after being idle): reload the page", 404)
        s.touch()
        return s

    def close(self, sid: str) -> None:
        with self._lock:
            s = self._sessions.pop(sid, None)
        if s is not None:
            s.cancel.set()
            with s.lock:
                s.close()

    def __len__(self) -> int:
        return len(self._sessions)

    def reap(self) -> list[str]:
        """Close the sessions idle for longer than the timeout (not one that is propagating)."""
        now = time.monotonic()
        with self._lock:
            idle = [
                sid
                for sid, s in self._sessions.items()
                if now - s.last_used > self.idle_timeout_s and not s.propagating
            ]
        for sid in idle:
            self.close(sid)
        return idle

    def _reap_loop(self) -> None:
        while not self._stop.wait(min(10.0, max(self.idle_timeout_s / 4, 0.05))):
            self.reap()

    def shutdown(self) -> None:
        self._stop.set()
        for sid in list(self._sessions):
            self.close(sid)
        shutil.rmtree(self.root, ignore_errors=True)
