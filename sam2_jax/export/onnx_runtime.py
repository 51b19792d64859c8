"""Track a video with the ONNX graphs of ``sam2_jax.export.onnx_export``: numpy and ``onnxruntime`` only (no JAX).

- ``OnnxModel(folder)``: the graphs as ``onnxruntime`` CPU sessions (made on first use), called by the StableHLO
  function names with the same pytree arguments and dict outputs as ``sam2_jax.export.runtime.ExportedModel``:
  ``propagate_1`` is the ``frame_features`` graph then ``track_step_<O>``; clicks are padded to the ``_many``
  graphs' slots with ``ABSENT_LABEL``; objects to the next exported object count with copies of the first object.
- ``OnnxVideoPredictor(model)``: ``init_state`` / ``add_new_points_or_box`` / ``add_new_mask`` /
  ``propagate_in_video`` as ``SAM2VideoPredictor`` (several objects, forward and reverse, clicks and boxes,
  corrections): the bookkeeping of ``sam2_jax.export.video_driver``, the same code the StableHLO runtime runs.

Limits of an ONNX export (all fixed when it is written, ``sam2-jax export --format onnx``): at most ``num_cond``
prompted frames per object, ``num_points`` clicks (a box counts 2) per prompt, and the largest object count of
``objects``. A mask prompt must be given at the model size (the live predictor's antialiased resize is JAX's).
"""

import json
import pathlib

import numpy as np

from sam2_jax.export import names
from sam2_jax.export.video_driver import VideoDriver, empty_state
from sam2_jax.tracker import host_state

# ``sam2_jax.modeling.sam.prompt_encoder.ABSENT_LABEL`` (not imported: the runtime loads no model code): a click
# slot that holds no click, masked out of the decoder's attention (tests/test_exported.py checks the two agree).
ABSENT_LABEL = -2


class OnnxModel:
    """An ONNX export folder: the manifest and one ``onnxruntime`` session per graph."""

    def __init__(self, folder: str | pathlib.Path, model: str | None = None) -> None:
        self.folder = pathlib.Path(folder)
        path = self.folder / names.ONNX_MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{str(folder)!r} holds no ONNX export: cannot read {path.name} ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != names.ONNX_FORMAT:
            raise ValueError(f"{str(folder)!r}: {path.name} has no format {names.ONNX_FORMAT!r}")
        if model is not None and manifest.get("model") != model:
            raise ValueError(f"{str(folder)!r} holds an export of {manifest.get('model')!r}, not of {model!r}")
        self.manifest = manifest
        self.graphs = manifest["graphs"]
        self.image_size = int(manifest["image_size"])
        self.mask_size = int(manifest["mask_size"])
        self.num_cond = int(manifest["num_cond"])
        self.num_points = int(manifest["num_points"])
        self.objects = sorted(int(o) for o in manifest["objects"] if names.track_step(o) in self.graphs)
        self.use_mask_input_as_output_without_sam = bool(manifest["use_mask_input_as_output_without_sam"])
        self._sessions = {}

    def has(self, name: str) -> bool:
        return name in self.graphs or (name == names.propagate(1) and bool(self.objects))

    def session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort

            if name not in self.graphs:
                raise ValueError(f"the ONNX export has no graph {name!r}; it has {sorted(self.graphs)}")
            opts = ort.SessionOptions()
            opts.log_severity_level = 3  # no warnings about the initializers the graph optimizer drops
            # ORT's constant folding peaks at 8 GB on the 128 px encoder graph (0.2 GB without it) and gains nothing
            # measurable here: the other graph optimizations stay on.
            self._sessions[name] = ort.InferenceSession(
                str(self.folder / self.graphs[name]["file"]),
                opts,
                ["CPUExecutionProvider"],
                disabled_optimizers=["ConstantFolding"],
            )
        return self._sessions[name]

    def run(self, name: str, args: dict) -> dict[str, np.ndarray]:
        """Graph ``name`` on its arguments by name (a dict argument is a pytree: ``state`` -> ``state.<field>``);
        returns its outputs by name."""
        g = self.graphs[name]
        feed = {}
        for i in g["inputs"]:
            head, _, key = i["name"].partition(".")
            x = args[head][key] if key else args[head]
            feed[i["name"]] = np.asarray(x, i["dtype"])
        return dict(zip(g["outputs"], self.session(name).run(None, feed), strict=True))

    def __call__(self, name: str, *args):
        """The StableHLO runtime's call: function ``name`` on its arguments in order (params excluded)."""
        if name == names.propagate(1):
            return self.propagate_one(*args)
        g = self.graphs.get(name)
        if g is None:
            raise ValueError(f"the ONNX export has no graph {name!r}; it has {sorted(self.graphs)}")
        kw = dict(zip(g["arg_names"], args, strict=True))
        if "point_labels" in kw:
            kw["point_coords"], kw["point_labels"] = self.pad_points(name, kw["point_coords"], kw["point_labels"])
        out = self.run(name, kw)
        return out["output"] if list(out) == ["output"] else out

    def pad_points(self, name: str, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clicks (1, n, 2), labels (1, n) padded with ``ABSENT_LABEL`` slots to graph ``name``'s click count."""
        want = next(i["shape"][1] for i in self.graphs[name]["inputs"] if i["name"] == "point_labels")
        n = labels.shape[1]
        if n > want:
            raise ValueError(
                f"{n} points (a box counts 2) in one prompt: this ONNX export takes at most {want} "
                "(sam2-jax export --format onnx --num-points N)"
            )
        return host_state.pad_clicks_to(coords, labels, want, ABSENT_LABEL)

    def propagate_one(self, state: dict, images: np.ndarray, frame_idxs: np.ndarray, reverse) -> tuple[dict, dict]:
        """``propagate_1``: one frame for every object of ``state``: (new state, outputs with a leading frame axis)."""
        O = len(state["cond_frame"])
        bucket = next((b for b in self.objects if b >= O), None)
        if bucket is None:
            raise ValueError(
                f"{O} objects: this ONNX export tracks at most {max(self.objects)} "
                "(sam2-jax export --format onnx --objects 1,2,4,...)"
            )
        padded = {k: host_state.pad_object_axis(v, bucket) for k, v in state.items()}  # copies of object 0
        feats = self(names.FRAME_FEATURES, images)
        args = {"state": padded, "features": feats, "frame_idx": frame_idxs[0], "reverse": reverse}
        res = self.run(names.track_step(bucket), args)
        new = {k.partition(".")[2]: v if np.ndim(v) == 0 else v[:O] for k, v in res.items() if k.startswith("0.")}
        out = {k.partition(".")[2]: v[:O][None] for k, v in res.items() if k.startswith("1.")}
        return new, out

    def empty_state(self, num_objects: int, num_cond: int, num_frames: int) -> dict[str, np.ndarray]:
        """A ``TrackerState`` (the dict the graphs take) with every slot invalid; bfloat16 fields as float32."""
        if num_cond != self.num_cond:
            raise ValueError(f"the ONNX export has {self.num_cond} conditioning slots, not {num_cond}")
        dtype = lambda name: np.dtype(np.float32 if name == "bfloat16" else name)  # noqa: E731
        return empty_state(self.manifest["state_layout"], {"o": num_objects}, num_frames, dtype)


class OnnxVideoPredictor(VideoDriver):
    """``SAM2VideoPredictor`` on an ONNX export (``sam2_jax.export.video_driver``), with numpy resizing."""

    def __init__(self, model: OnnxModel | str | pathlib.Path) -> None:
        super().__init__(model if isinstance(model, OnnxModel) else OnnxModel(model), 1)

    def cond_slots(self, num_cond: int) -> int:
        if num_cond > self.model.num_cond:
            raise ValueError(
                f"{num_cond} prompted frames for one object: this ONNX export has {self.model.num_cond} conditioning "
                "slots (sam2-jax export --format onnx --cond-slots N)"
            )
        return self.model.num_cond

    def video_res(self, masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        return resize_bilinear(np.asarray(masks, np.float32), hw)

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        S = self.image_size
        m = np.asarray(mask).astype(bool)
        if m.shape != (S, S):
            raise ValueError(f"the ONNX runtime takes a mask prompt at the model size ({S}, {S}), got {m.shape}")
        return m.astype(np.float32)[None, :, :, None]


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a half-pixel bilinear resize along one axis (``align_corners=False``)."""
    x = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    return i0, np.minimum(i0 + 1, n_in - 1), (x - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(..., h, w) -> (..., H, W): torch's ``F.interpolate(mode="bilinear", align_corners=False)``."""
    i0, i1, wy = _linear_taps(x.shape[-2], hw[0])
    x = x[..., i0, :] * (1 - wy)[:, None] + x[..., i1, :] * wy[:, None]
    j0, j1, wx = _linear_taps(x.shape[-1], hw[1])
    return x[..., j0] * (1 - wx) + x[..., j1] * wx
