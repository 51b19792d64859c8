"""The runtime of an export (``sam2_jax.export.stablehlo``): the image predictor and the video tracker from a folder of
serialized StableHLO, with no model code.

Imports only ``jax``, ``numpy`` and two numpy/jax-only helpers of this package (``sam2_jax.utils.transforms`` and
``sam2_jax.utils.interpolate``: the predictors' own resizing, so the outputs match theirs); no Flax, no
``sam2_jax.modeling`` (``tests/test_exported.py`` checks ``sys.modules`` in a subprocess). Every computation is an
exported function called through ``jax.export.deserialize(...).call``.

- ``ExportedModel(folder)``: the manifest, the params (``params.npz``, put on the device once) and the functions.
- ``ExportedImagePredictor``: ``set_image`` / ``predict`` as ``SAM2ImagePredictor`` for clicks and a box (one
  prompt set per call; no ``mask_input``, no batches of images).
- ``ExportedVideoPredictor``: ``init_state`` / ``add_new_points_or_box`` / ``add_new_mask`` /
  ``propagate_in_video`` (forward and reverse, corrections, several objects) as ``SAM2VideoPredictor``: the
  bookkeeping of ``sam2_jax.export.video_driver`` (shared with the ONNX runtime) on these functions. Frames are
  given preprocessed (``(T, S, S, 3)`` float32, normalised as ``sam2_jax.video.video_io`` does) or as
  ``(T, S, S, 3)`` uint8 at the model size; resize video frames with PIL bicubic, as the official loader, first.
"""

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.export import names, video_driver
from sam2_jax.export.names import FORMAT
from sam2_jax.export.video_driver import NO_OBJ_SCORE, VideoDriver, VideoState  # noqa: F401  (re-exported)
from sam2_jax.tracker import host_state
from sam2_jax.utils.interpolate import interpolate
from sam2_jax.utils.transforms import SAM2Transforms


class ExportedModel:
    """An export folder: the manifest, the params on the device and the deserialized functions (compiled once)."""

    def __init__(self, folder: str | pathlib.Path, model: str | None = None) -> None:
        """
        Args:
          folder: written by ``sam2_jax.export.stablehlo.export_model`` (``sam2-jax export``).
          model: the config name the caller expects (e.g. ``sam2.1_hiera_t``); a ``ValueError`` if the export is of
            another model.
        """
        self.folder = pathlib.Path(folder)
        path = self.folder / names.MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{str(folder)!r} is not a sam2-jax export: cannot read {path.name} ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"{str(folder)!r} is not a sam2-jax export: {path.name} has no format {FORMAT!r}")
        if model is not None and manifest.get("model") != model:
            raise ValueError(f"{str(folder)!r} holds an export of {manifest.get('model')!r}, not of {model!r}")
        self.manifest = manifest
        self.image_size = int(manifest["image_size"])
        with np.load(self.folder / manifest["params"]["file"]) as z:
            flat = {k: z[k] for k in z.files}
        self.params = jax.device_put(unflatten_params(flat))
        self.mask_size = int(manifest["mask_size"])
        self.use_mask_input_as_output_without_sam = bool(manifest["use_mask_input_as_output_without_sam"])
        self._fns: dict[str, Any] = {}

    def has(self, name: str) -> bool:
        return name in self.manifest["functions"]

    def fn(self, name: str):
        """The exported function ``name`` (deserialized and jitted on first use)."""
        if name not in self._fns:
            entry = self.manifest["functions"].get(name)
            if entry is None:
                raise ValueError(f"the export has no function {name!r}; it has {sorted(self.manifest['functions'])}")
            exp = jax.export.deserialize(bytearray((self.folder / entry["file"]).read_bytes()))
            self._fns[name] = jax.jit(exp.call)
        return self._fns[name]

    def __call__(self, name: str, *args):
        """Call the exported function ``name`` with the params and ``args``."""
        return self.fn(name)(self.params, *args)

    def empty_state(self, num_objects: int, num_cond: int, num_frames: int) -> dict[str, np.ndarray]:
        """A ``TrackerState`` (as the dict the functions take) with every slot invalid, from the manifest's layout."""
        dims = {"o": num_objects, "k": num_cond}
        return video_driver.empty_state(self.manifest["state_layout"], dims, num_frames, jnp.dtype)


def unflatten_params(flat: dict[str, np.ndarray]) -> dict:
    """``{"a/b/c": array}`` -> the nested params dict."""
    out: dict = {}
    for key, v in flat.items():
        d = out
        *parents, leaf = key.split("/")
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out


class ExportedImagePredictor:
    """``SAM2ImagePredictor`` on an export: ``set_image`` then ``predict`` for clicks and/or a box."""

    def __init__(self, model: ExportedModel, mask_threshold: float = 0.0) -> None:
        self.model = model
        self.transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=mask_threshold)
        self.mask_threshold = mask_threshold
        self._embed = None
        self._orig_hw = None

    def set_image(self, image: np.ndarray) -> None:
        """The embeddings of one ``(H, W, 3)`` uint8 RGB image."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
        self._orig_hw = image.shape[:2]
        self._embed = self.model(names.IMAGE_ENCODER, self.transforms(image)[None])

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``SAM2ImagePredictor.predict`` for one prompt set: masks (M, H, W), IoU predictions (M,), low-res
        logits (M, 4h, 4w) clipped to [-32, 32]."""
        if self._embed is None:
            raise ValueError("predict: an image must be set with .set_image(...) first")
        coords, labels = [], []
        if box is not None:
            b = np.asarray(box, np.float32).reshape(1, 4)
            coords.append(np.asarray(self.transforms.transform_boxes(b, normalize_coords, self._orig_hw)))
            labels.append(np.array([[2, 3]], np.int32))
        if point_coords is not None:
            pc = np.asarray(point_coords, np.float32).reshape(1, -1, 2)
            pl = np.asarray(point_labels, np.int32).reshape(1, -1)
            if pl.shape[1] != pc.shape[1]:
                raise ValueError(f"{pl.shape[1]} point_labels for {pc.shape[1]} point_coords")
            coords.append(np.asarray(self.transforms.transform_coords(pc, normalize_coords, self._orig_hw)))
            labels.append(pl)
        if not coords:
            raise ValueError("predict on an export needs point_coords/point_labels or a box")
        name = names.image_decode(multimask_output)
        out = self.model(name, self._embed, np.concatenate(coords, 1), np.concatenate(labels, 1))
        masks = self.transforms.postprocess_masks(out["low_res_masks"], self._orig_hw)
        if not return_logits:
            masks = masks > self.mask_threshold
        low = np.clip(np.asarray(out["low_res_masks"], np.float32), -32.0, 32.0)
        return np.asarray(masks)[0], np.asarray(out["iou_predictions"], np.float32)[0], low[0]


class ExportedVideoPredictor(VideoDriver):
    """``SAM2VideoPredictor`` on a StableHLO export: prompts on any frame, propagation, corrections, several objects
    (``sam2_jax.export.video_driver``), with the live predictor's resizing."""

    def __init__(self, model: ExportedModel, chunk_size: int | None = None, max_cond_slots: int = 16) -> None:
        super().__init__(model, chunk_size or int(model.manifest["chunk_size"]))
        self.max_cond_slots = max_cond_slots

    def cond_slots(self, num_cond: int) -> int:
        return host_state.cond_slots(num_cond, self.max_cond_slots)

    def video_res(self, masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        masks = jnp.asarray(masks)
        if masks.ndim == 5:
            return np.asarray(video_res_chunk(masks, hw))
        return np.asarray(video_res(masks, hw))

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        S = self.image_size
        m = jnp.asarray(np.asarray(mask).astype(bool).astype(np.float32))[None, :, :, None]
        if m.shape[1:3] != (S, S):
            m = (interpolate(m, (S, S), "bilinear", antialias=True) >= 0.5).astype(jnp.float32)
        return np.asarray(m)


@functools.partial(jax.jit, static_argnums=1)
def video_res(masks: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """Low-res logits (O, 1, h, w) -> video resolution (O, 1, H, W), bilinear as the video predictor."""
    # (O, 1, h, w) -> (O, h, w, 1) -> (O, H, W, 1) -> (O, 1, H, W)
    return interpolate(masks.transpose(0, 2, 3, 1), hw, "bilinear").transpose(0, 3, 1, 2)


@functools.partial(jax.jit, static_argnums=1)
def video_res_chunk(masks: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """``video_res`` of every frame of a chunk: (T, O, 1, h, w) -> (T, O, 1, H, W)."""
    return jax.vmap(lambda m: video_res(m, hw))(masks)
