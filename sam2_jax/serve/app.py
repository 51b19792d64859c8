"""``sam2-jax serve``: the interactive demo as a Flask app (static HTML/JS and a canvas; no front-end build).

The JSON API the page uses (every error is ``{"error": "one line"}`` with a 4xx status):

  POST   /api/sessions                          -> {"session": id}   (429 at the session cap)
  DELETE /api/sessions/<sid>
  GET    /api/sessions/<sid>                    -> what is open: kind, frames, size, objects, frames with masks
  GET    /api/files                             -> what --allow-dir holds (frame folders, videos, images)
  POST   /api/sessions/<sid>/open               multipart "file" (an image or a video), or {"path": relative path}
  GET    /api/sessions/<sid>/frames/<t>         the frame as JPEG
  POST   /api/sessions/<sid>/prompt             {"frame", "obj_id", "points": [[x, y, label], ...], "box"} -> mask
  POST   /api/sessions/<sid>/clear              {"frame", "obj_id"}: remove that object's prompts on the frame
  POST   /api/sessions/<sid>/remove_object      {"obj_id"}
  POST   /api/sessions/<sid>/reset
  GET    /api/sessions/<sid>/masks/<t>          -> the masks shown on frame t
  GET    /api/sessions/<sid>/propagate?direction=forward|backward|both&start=N
                                                server-sent events: one per frame as it is tracked, then "end"
  POST   /api/sessions/<sid>/cancel             stop a propagation after its current frame
  POST   /api/sessions/<sid>/auto               the automatic mask generator on an image, with its parameters
  GET    /api/sessions/<sid>/download/masks.zip palette PNGs per frame (DAVIS/VOS layout) and a PNG per object
  GET    /api/sessions/<sid>/download/overlay   overlay MP4 (a video) or PNG (an image)

A mask travels as a PNG (base64) of the frame's object-id map with the tab10 colours of the official notebooks and
index 0 transparent, so the page draws it over the frame as it is.
"""

import base64
import io
import json
import logging
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np
from flask import Flask, Response, jsonify, request, send_file
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sam2_jax.serve.sessions import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    DeviceQueue,
    Session,
    SessionManager,
    UserError,
)
from sam2_jax.utils.visualize import PALETTE, davis_palette, overlay_objects, write_video

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_IMAGE_PIXELS = 64_000_000
AUTO_PARAMS = {  # name: (type, low, high) of the mask generator's parameters the page may set
    "points_per_side": (int, 1, 64),
    "pred_iou_thresh": (float, 0.0, 1.0),
    "stability_score_thresh": (float, 0.0, 1.0),
    "box_nms_thresh": (float, 0.0, 1.0),
    "min_mask_region_area": (int, 0, 10**6),
}


def mask_png(label_map: np.ndarray) -> str:
    """An object-id map as a base64 PNG: tab10 colours by id (as the notebooks), index 0 transparent."""
    img = Image.fromarray(label_map, mode="P")
    colours = np.concatenate([np.zeros((1, 3), np.uint8), PALETTE[np.arange(1, 256) % len(PALETTE)]])
    img.putpalette(colours.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    return base64.b64encode(buf.getvalue()).decode()


def _number(body: dict, key: str, kind=int, default=None):
    value = body.get(key, default)
    if value is None:
        raise UserError(f"missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise UserError(f"{key!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def _points(body: dict, hw: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``points`` [[x, y, label], ...] and ``box`` [x0, y0, x1, y1] from a prompt request, as the predictors take
    them: checked by the predictors' validation layer, and inside the ``(H, W)`` frame."""
    from sam2_jax.utils.validation import check_boxes, check_inside, check_points

    raw, box = body.get("points") or [], body.get("box")
    ok = isinstance(raw, list) and all(
        isinstance(p, list) and len(p) == 3 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        for p in raw
    )
    if not ok:
        raise UserError("points must be a list of [x, y, label]")
    numbers = isinstance(box, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
    if box is not None and not (numbers and len(box) == 4):
        raise UserError("box must be [x0, y0, x1, y1]")
    if any(p[2] not in (0, 1) for p in raw):
        raise UserError("a point's label must be 1 (positive) or 0 (negative)")
    try:
        pts = check_points([p[:2] for p in raw], "points") if raw else None
        box = check_boxes(box) if box is not None else None
        check_inside(pts, box, hw, "frame")
    except ValueError as e:
        raise UserError(str(e)) from None
    labels = np.array([p[2] for p in raw], np.int32) if raw else None
    return pts, labels, box


class Server:
    """The model, built once per process, and the sessions that share it."""

    def __init__(
        self,
        model,
        allow_dir: str | None = None,
        max_sessions: int = 8,
        idle_timeout_s: float = 900.0,
        max_upload_mb: float = 200.0,
        max_frames: int = 1000,
        session_memory_mb: float = 512.0,
        tracker_policy: str | None = None,
        chunk_size: int = 1,
    ) -> None:
        """
        Args:
          model: from ``build_sam2`` (or the CLI's loader); built once, shared by every session.
          allow_dir: the folder whose files the page may open by path (None: uploads only).
          max_sessions, idle_timeout_s: the session cap and the idle time after which a session is closed.
          max_upload_mb, max_frames: the largest upload and the longest video a session opens.
          session_memory_mb: each session's output store budget (the video predictor's ``store_budget_mb``).
          tracker_policy: as ``SAM2VideoPredictor``'s.
          chunk_size: frames per device turn of a propagation (1: each frame is shown as soon as it is tracked,
            and another session's click waits for one frame, not a chunk). The predictor dispatches no chunk
            ahead (``chunks_in_flight=0``), so that nothing of one session runs while the queue serves another.
        """
        from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

        self.model = model
        self.allow_dir = os.path.realpath(allow_dir) if allow_dir else None
        self.max_upload_mb = float(max_upload_mb)
        self.max_frames = int(max_frames)
        self.video_predictor = SAM2VideoPredictor(
            model,
            store_budget_mb=session_memory_mb,
            tracker_policy=tracker_policy,
            chunk_size=chunk_size,
            chunks_in_flight=0,
        )
        self.video_predictor.progress = False
        self.device = DeviceQueue()
        self.sessions = SessionManager(max_sessions, idle_timeout_s)

    def warm_up(self) -> None:
        """Compile what the first click and the first tracked frame need (a 2-frame clip, one object), so the first
        user does not wait for it."""
        predictor = self.video_predictor
        state = self.device.run(predictor.init_state, np.zeros((2, 64, 64, 3), np.uint8))
        self.device.run(predictor.add_new_points_or_box, state, 0, 1, points=[[32, 32]], labels=[1])
        self.device.run(lambda: list(predictor.propagate_in_video(state)))
        state.images.close()

    # --- opening ----------------------------------------------------------------------------------------------
    def resolve(self, rel: str) -> str:
        """A path the page asked for, inside ``--allow-dir`` or refused (no ``..``, no absolute path, no link out)."""
        if self.allow_dir is None:
            raise UserError("this server reads no paths: start it with --allow-dir FOLDER, or upload a file", 403)
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise UserError("path must be a non-empty string")
        full = os.path.realpath(os.path.join(self.allow_dir, rel))
        if os.path.commonpath([full, self.allow_dir]) != self.allow_dir:
            raise UserError(f"path {rel!r} is outside the folder this server may read", 403)
        if not os.path.exists(full):
            raise UserError(f"path {rel!r} does not exist", 404)
        return full

    def files(self) -> list[dict]:
        """What ``--allow-dir`` offers: frame folders, video files and images, two levels deep."""
        if self.allow_dir is None:
            return []
        out = []
        for root, dirs, names in os.walk(self.allow_dir):
            depth = os.path.relpath(root, self.allow_dir).count(os.sep) + (root != self.allow_dir)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < 2 else []
            frames = [n for n in names if n.lower().endswith((".jpg", ".jpeg", ".png"))]
            if root != self.allow_dir and frames and all(Path(n).stem.isdigit() for n in frames):
                out.append({"path": os.path.relpath(root, self.allow_dir), "kind": "video", "frames": len(frames)})
                continue
            for n in sorted(names):
                kind = (
                    "video"
                    if n.lower().endswith(VIDEO_EXTENSIONS)
                    else "image"
                    if n.lower().endswith(IMAGE_EXTENSIONS)
                    else None
                )
                if kind:
                    out.append({"path": os.path.relpath(os.path.join(root, n), self.allow_dir), "kind": kind})
        return out

    def open(self, s: Session, path: str, name: str) -> dict:
        """Open an image or a video (a file or a folder of frames) in ``s``; on failure ``s`` keeps what it had."""
        is_image = os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)
        if os.path.isfile(path) and not is_image and not path.lower().endswith(VIDEO_EXTENSIONS):
            raise UserError(
                f"{name!r} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                f"({', '.join(VIDEO_EXTENSIONS)})",
                415,
            )
        with s.lock:
            self._idle(s)
            if is_image:
                image = self._read_image(path, name)
                from sam2_jax.sam2_image_predictor import SAM2ImagePredictor

                predictor = SAM2ImagePredictor(self.model)
                self.device.run(predictor.set_image, image)
                s.close_video()
                s.kind, s.image, s.image_predictor = "image", image, predictor
                s.num_frames, s.hw = 1, image.shape[:2]
            else:
                try:
                    state = self.device.run(self.video_predictor.init_state, path)
                except (ValueError, OSError) as e:
                    raise UserError(f"cannot read video {name!r}: {' '.join(str(e).split())}") from None
                if state.num_frames > self.max_frames:
                    state.images.close()
                    raise UserError(
                        f"{name!r} has {state.num_frames} frames; this server takes at most {self.max_frames} "
                        "(--max-frames)",
                        413,
                    )
                s.close_video()
                s.kind, s.state, s.image, s.image_predictor = "video", state, None, None
                s.num_frames, s.hw = state.num_frames, (state.video_height, state.video_width)
            s.name = name
            s.shown.clear()
            s.image_prompts.clear()
            s.prompt_frames.clear()
            s.auto_masks = []
            return self.info(s)

    def upload(self, s: Session, upload) -> dict:
        """Open an uploaded file (werkzeug's ``FileStorage``): saved in the session's folder, checked by extension,
        then by decoding. A video's file stays there while it is open (its decoder reads it)."""
        name = os.path.basename(upload.filename or "upload")
        ext = os.path.splitext(name)[1].lower()
        if ext not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            raise UserError(
                f"{name!r}: upload an image ({', '.join(IMAGE_EXTENSIONS)}) or a video ({', '.join(VIDEO_EXTENSIONS)})",
                415,
            )
        path = os.path.join(s.workdir, f"upload-{uuid.uuid4().hex}{ext}")
        upload.save(path)
        try:
            return self.open(s, path, name)
        except Exception:
            os.remove(path)
            raise
        finally:
            if ext in IMAGE_EXTENSIONS and os.path.exists(path):
                os.remove(path)  # the image is in memory

    @staticmethod
    def _read_image(path: str, name: str) -> np.ndarray:
        try:
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise UserError(f"image {name!r} is {im.width}x{im.height}: at most {MAX_IMAGE_PIXELS} pixels", 413)
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise UserError(f"cannot read image {name!r}: {' '.join(str(e).split())}") from None

    def info(self, s: Session) -> dict:
        return {
            "session": s.id,
            "kind": s.kind,
            "name": s.name,
            "num_frames": s.num_frames,
            "width": int(s.hw[1]),
            "height": int(s.hw[0]),
            "objects": s.object_ids(),
            "frames_with_masks": sorted(s.shown),
            "propagating": s.propagating,
            "shown_mask_bytes": s.shown_bytes(),
        }

    @staticmethod
    def _idle(s: Session) -> None:
        if s.propagating:
            raise UserError("a propagation is running in this session: cancel it or wait for it to end", 409)

    def _need(self, s: Session, kind: str | None = None) -> None:
        if s.kind is None:
            raise UserError("open an image or a video first")
        if kind is not None and s.kind != kind:
            raise UserError(f"this needs {'a video' if kind == 'video' else 'an image'}; the session has a {s.kind}")

    # --- prompts ----------------------------------------------------------------------------------------------
    def prompt(self, s: Session, body: dict) -> dict:
        """Clicks and/or a box for one object on one frame (they replace that object's prompts there); returns the
        masks of every object on the frame."""
        self._need(s)
        frame, obj_id = _number(body, "frame", default=0), _number(body, "obj_id")
        if not 0 <= frame < s.num_frames:
            raise UserError(f"frame {frame} is past the end ({s.num_frames} frames)")
        if not 1 <= obj_id <= 255:
            raise UserError(f"obj_id must be in 1..255 (a palette index), got {obj_id}")
        pts, labels, box = _points(body, s.hw)
        with s.lock:
            self._idle(s)
            if pts is None and box is None:
                return self.clear(s, {"frame": frame, "obj_id": obj_id})
            if s.kind == "image":
                s.image_prompts[obj_id] = {"points": body.get("points") or [], "box": body.get("box")}
                self._predict_image_object(s, obj_id, pts, labels, box)
            else:
                try:
                    _, obj_ids, logits = self.device.run(
                        self.video_predictor.add_new_points_or_box,
                        s.state,
                        frame,
                        obj_id,
                        points=pts,
                        labels=labels,
                        box=box,
                    )
                except ValueError as e:
                    raise UserError(str(e)) from None
                s.record(frame, obj_ids, np.asarray(logits)[:, 0] > 0)
                s.prompt_frames.setdefault(frame, set()).add(obj_id)
            return self.frame_masks(s, frame)

    def _predict_image_object(self, s: Session, obj_id: int, pts, labels, box) -> None:
        """The image predictor's best mask for one object's prompts (three masks for a lone click, as the
        notebooks, the highest score kept)."""
        multimask = box is None and pts is not None and len(pts) == 1
        try:
            masks, scores, _ = self.device.run(
                s.image_predictor.predict, point_coords=pts, point_labels=labels, box=box, multimask_output=multimask
            )
        except ValueError as e:
            raise UserError(str(e)) from None
        current = s.masks_at(0) if 0 in s.shown else {}
        current[obj_id] = np.asarray(masks[int(np.argmax(scores))]) > 0
        ids = sorted(current)
        s.record(0, ids, np.stack([current[o] for o in ids]))

    def clear(self, s: Session, body: dict) -> dict:
        self._need(s)
        frame, obj_id = _number(body, "frame", default=0), _number(body, "obj_id")
        with s.lock:
            self._idle(s)
            if obj_id not in s.object_ids():
                raise UserError(f"no object {obj_id}; objects: {s.object_ids()}")
            if s.kind == "image":
                return self.remove_object(s, {"obj_id": obj_id})
            try:
                _, obj_ids, logits = self.device.run(
                    self.video_predictor.clear_all_prompts_in_frame, s.state, frame, obj_id
                )
            except ValueError as e:
                raise UserError(str(e)) from None
            s.record(frame, obj_ids, np.asarray(logits)[:, 0] > 0)
            s.prompt_frames.get(frame, set()).discard(obj_id)
            return self.frame_masks(s, frame)

    def remove_object(self, s: Session, body: dict) -> dict:
        self._need(s)
        obj_id = _number(body, "obj_id")
        with s.lock:
            self._idle(s)
            if obj_id not in s.object_ids():
                raise UserError(f"no object {obj_id}; objects: {s.object_ids()}")
            if s.kind == "video":
                self.device.run(self.video_predictor.remove_object, s.state, obj_id, need_output=False)
            s.image_prompts.pop(obj_id, None)
            s.forget_object(obj_id)
            for objs in s.prompt_frames.values():
                objs.discard(obj_id)
            return self.info(s)

    def reset(self, s: Session) -> dict:
        self._need(s)
        with s.lock:
            self._idle(s)
            if s.kind == "video":
                self.device.run(self.video_predictor.reset_state, s.state)
            s.image_prompts.clear()
            s.prompt_frames.clear()
            s.shown.clear()
            s.auto_masks = []
            return self.info(s)

    def frame_masks(self, s: Session, frame: int) -> dict:
        if not s.shown.get(frame):
            return {"frame": frame, "objects": s.object_ids(), "mask": None}
        return {"frame": frame, "objects": s.object_ids(), "mask": mask_png(s.label_map_at(frame))}

    def frame_jpeg(self, s: Session, frame: int) -> bytes:
        self._need(s)
        if not 0 <= frame < s.num_frames:
            raise UserError(f"frame {frame} is past the end ({s.num_frames} frames)", 404)
        # decoding goes through the device queue: a propagation reads the same decoder
        rgb = s.image if s.kind == "image" else self.device.run(s.state.images.original_frame, frame)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
        return buf.getvalue()

    # --- propagation ------------------------------------------------------------------------------------------
    def propagation(self, s: Session, direction: str, start: int | None):
        """Check a propagation request and mark the session busy; returns the event generator for the response."""
        self._need(s, "video")
        if direction not in ("forward", "backward", "both"):
            raise UserError(f"direction must be forward, backward or both, got {direction!r}")
        with s.lock:
            self._idle(s)
            prompted = sorted(f for f, objs in s.prompt_frames.items() if objs)
            if not s.object_ids() or not prompted:
                raise UserError("click an object first: propagation needs a prompt")
            if start is None:
                start = prompted[0] if direction != "backward" else prompted[-1]
            if not 0 <= start < s.num_frames:
                raise UserError(f"start frame {start} is past the end ({s.num_frames} frames)")
            s.propagating = True
            s.cancel.clear()
        return self._events(s, direction, start)

    def _events(self, s: Session, direction: str, start: int):
        passes = [p for p, on in ((False, direction != "backward"), (True, direction != "forward")) if on]
        total = (s.num_frames - start if not passes[0] else 0) + (start + 1 if passes[-1] else 0)
        total -= direction == "both"
        done, gen = 0, None
        try:
            for reverse in passes:
                gen = self.video_predictor.propagate_in_video(s.state, start_frame_idx=start, reverse=reverse)
                while not s.cancel.is_set():
                    item = self.device.run(next, gen, None)
                    if item is None:
                        break
                    t, obj_ids, logits = item
                    s.record(t, obj_ids, np.asarray(logits)[:, 0] > 0)
                    if reverse and direction == "both" and t == start:
                        continue  # the forward pass showed it
                    done += 1
                    s.touch()
                    event = dict(self.frame_masks(s, t), done=done, total=total)
                    yield f"data: {json.dumps(event)}\n\n"
                self.device.run(gen.close)
                gen = None
                if s.cancel.is_set():
                    break
            yield f"event: end\ndata: {json.dumps({'done': done, 'total': total, 'cancelled': s.cancel.is_set()})}\n\n"
        except Exception as e:  # noqa: BLE001 - the page shows it; the session stays usable
            logger.exception("propagation failed")
            yield f"event: failed\ndata: {json.dumps({'error': f'{type(e).__name__}: {e}'})}\n\n"
        finally:  # also on GeneratorExit: the client went away mid-propagation
            if gen is not None:
                self.device.run(gen.close)
            s.propagating = False
            s.touch()

    # --- the mask generator -----------------------------------------------------------------------------------
    def auto(self, s: Session, body: dict) -> dict:
        self._need(s, "image")
        kwargs = {}
        for key, (kind, lo, hi) in AUTO_PARAMS.items():
            if key in body:
                v = _number(body, key, kind)
                if not lo <= v <= hi:
                    raise UserError(f"{key} must be in [{lo}, {hi}], got {v}")
                kwargs[key] = v
        from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator

        with s.lock:
            self._idle(s)
            records = self.device.run(SAM2AutomaticMaskGenerator(self.model, **kwargs).generate, s.image)
            records = sorted(records, key=lambda r: -r["area"])
            s.auto_masks = [np.asarray(r["segmentation"], bool) for r in records]
            ids = np.zeros(s.hw, np.uint8)
            for i, m in enumerate(s.auto_masks[:255]):  # the largest first, so a small one stays visible on top
                ids[m] = i + 1
            return {"count": len(records), "mask": mask_png(ids), "areas": [int(r["area"]) for r in records]}

    # --- downloads --------------------------------------------------------------------------------------------
    def masks_zip(self, s: Session) -> bytes:
        """``palette/<frame>.png`` (object ids, DAVIS palette: the VOS benchmarks' format) and
        ``objects/<obj_id>/<frame>.png`` (0/255) for every frame with masks; ``auto/<i>.png`` for the generator's."""
        self._need(s)
        buf = io.BytesIO()
        shown = s.snapshot()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for t in sorted(shown):
                z.writestr(f"palette/{t:05d}.png", _png(s.label_map_at(t, shown), davis_palette()))
                for o, m in s.masks_at(t, shown).items():
                    z.writestr(f"objects/{o}/{t:05d}.png", _png(m.astype(np.uint8) * 255))
            for i, m in enumerate(s.auto_masks):
                z.writestr(f"auto/{i:04d}.png", _png(m.astype(np.uint8) * 255))
        return buf.getvalue()

    def overlay(self, s: Session) -> tuple[str, str]:
        """The overlay as a file in the session's folder: ``(path, mimetype)``."""
        self._need(s)
        if not s.shown:
            raise UserError("nothing to draw yet: click an object first")
        shown = s.snapshot()
        if s.kind == "image":
            path = os.path.join(s.workdir, f"overlay-{uuid.uuid4().hex}.png")
            overlay_objects(s.image, s.masks_at(0, shown)).save(path)
            return path, "image/png"
        read = s.state.images.original_frame
        frames = [overlay_objects(self.device.run(read, t), s.masks_at(t, shown)) for t in sorted(shown)]
        path = os.path.join(s.workdir, f"overlay-{uuid.uuid4().hex}.mp4")
        write_video(frames, path)
        return path, "video/mp4"

    def shutdown(self) -> None:
        self.sessions.shutdown()
        self.device.shutdown()


def _png(array: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    img = Image.fromarray(array, mode="P" if palette is not None else "L")
    if palette is not None:
        img.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise UserError("the request body must be a JSON object")
    return data


def create_app(server: Server) -> Flask:
    """The Flask app of ``server``: the page, the JSON API, and every error as ``{"error": "one line"}``."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(server.max_upload_mb * 2**20)
    app.extensions["sam2_jax_server"] = server

    @app.errorhandler(UserError)
    def user_error(e: UserError):
        return jsonify(error=str(e)), e.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        return jsonify(error=f"the upload is larger than this server's limit of {server.max_upload_mb:g} MB"), 413

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return jsonify(error=f"{e.code} {e.name}: {e.description}"), e.code

    @app.errorhandler(Exception)
    def internal(e: Exception):
        logger.exception("request failed")
        return jsonify(error=f"internal error: {type(e).__name__}: {' '.join(str(e).split())}"), 500

    @app.get("/")
    def index():
        return send_file(STATIC / "index.html")

    _session_routes(app, server)
    _work_routes(app, server)
    return app


def _session_routes(app: Flask, server: Server) -> None:
    """Sessions, opening, frames."""
    sessions = server.sessions

    @app.get("/api/files")
    def files():
        return jsonify(allow_dir=server.allow_dir is not None, files=server.files())

    @app.post("/api/sessions")
    def new_session():
        return jsonify(session=sessions.create().id)

    @app.delete("/api/sessions/<sid>")
    def close_session(sid):
        sessions.get(sid)
        sessions.close(sid)
        return jsonify(closed=sid)

    @app.get("/api/sessions/<sid>")
    def info(sid):
        return jsonify(server.info(sessions.get(sid)))

    @app.post("/api/sessions/<sid>/open")
    def open_(sid):
        s = sessions.get(sid)
        upload = request.files.get("file")
        if upload is None:
            rel = _body().get("path")
            return jsonify(server.open(s, server.resolve(rel), rel))
        return jsonify(server.upload(s, upload))

    @app.get("/api/sessions/<sid>/frames/<int:t>")
    def frame(sid, t):
        return Response(server.frame_jpeg(sessions.get(sid), t), mimetype="image/jpeg")


def _work_routes(app: Flask, server: Server) -> None:
    """Prompts, propagation, the mask generator, downloads."""
    sessions = server.sessions

    @app.post("/api/sessions/<sid>/prompt")
    def prompt(sid):
        return jsonify(server.prompt(sessions.get(sid), _body()))

    @app.post("/api/sessions/<sid>/clear")
    def clear(sid):
        return jsonify(server.clear(sessions.get(sid), _body()))

    @app.post("/api/sessions/<sid>/remove_object")
    def remove_object(sid):
        return jsonify(server.remove_object(sessions.get(sid), _body()))

    @app.post("/api/sessions/<sid>/reset")
    def reset(sid):
        return jsonify(server.reset(sessions.get(sid)))

    @app.get("/api/sessions/<sid>/masks/<int:t>")
    def masks(sid, t):
        return jsonify(server.frame_masks(sessions.get(sid), t))

    @app.get("/api/sessions/<sid>/propagate")
    def propagate(sid):
        s = sessions.get(sid)
        start = request.args.get("start")
        if start is not None and not start.isdigit():
            raise UserError(f"start must be a frame index, got {start!r}")
        events = server.propagation(s, request.args.get("direction", "both"), None if start is None else int(start))
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(events, mimetype="text/event-stream", headers=headers)

    @app.post("/api/sessions/<sid>/cancel")
    def cancel(sid):
        s = sessions.get(sid)
        s.cancel.set()
        return jsonify(cancelled=s.propagating)

    @app.post("/api/sessions/<sid>/auto")
    def auto(sid):
        return jsonify(server.auto(sessions.get(sid), _body()))

    @app.get("/api/sessions/<sid>/download/masks.zip")
    def download_masks(sid):
        data = server.masks_zip(sessions.get(sid))
        return send_file(io.BytesIO(data), mimetype="application/zip", as_attachment=True, download_name="masks.zip")

    @app.get("/api/sessions/<sid>/download/overlay")
    def download_overlay(sid):
        path, mimetype = server.overlay(sessions.get(sid))
        name = "overlay.mp4" if mimetype == "video/mp4" else "overlay.png"
        return send_file(path, mimetype=mimetype, as_attachment=True, download_name=name)
