"""Track a video with the ONNX graphs of ``sam2_jax.onnx_export``: numpy and ``onnxruntime`` only (no JAX).

``OnnxTracker(folder).track(frames, coords, labels)``: a prompt (clicks / a box) on frame 0, then every later frame
tracked by ``track_step.onnx`` carrying the ``TrackerState`` fields from one call to the next, as
``SAM2VideoPredictor.propagate_in_video`` does after ``add_new_points_or_box`` on frame 0 (each frame: the encoder
graph, then the tracking graph on its features). One object; corrections are not in the ONNX graphs (the prompt
graph is the first-frame prompt step).
"""

import json
import pathlib

import numpy as np


class OnnxTracker:
    """The ONNX graphs of an export folder, as ``onnxruntime`` CPU sessions."""

    def __init__(self, folder: str | pathlib.Path) -> None:
        import onnxruntime as ort

        self.folder = pathlib.Path(folder)
        try:
            self.manifest = json.loads((self.folder / "onnx_manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{str(folder)!r} holds no ONNX export: {e}") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # no warnings about the initializers the graph optimizer drops
        # ORT's constant folding peaks at 8 GB on the 128 px encoder graph (0.2 GB without it) and gains nothing
        # measurable here: the other graph optimizations stay on.
        self.sessions = {
            name: ort.InferenceSession(
                str(self.folder / g["file"]), opts, ["CPUExecutionProvider"], disabled_optimizers=["ConstantFolding"]
            )
            for name, g in self.manifest["graphs"].items()
        }

    def run(self, name: str, *args) -> list[np.ndarray]:
        """Run graph ``name`` on its inputs in manifest order."""
        g = self.manifest["graphs"][name]
        feed = {i["name"]: np.asarray(a, i["dtype"]) for i, a in zip(g["inputs"], args, strict=True)}
        return self.sessions[name].run(None, feed)

    def empty_state(self, num_frames: int) -> dict[str, np.ndarray]:
        """The tracking step's state inputs with every slot invalid."""
        g = self.manifest["graphs"]["track_step"]
        names = [i["name"] for i in g["inputs"]]
        inputs = g["inputs"][names.index("reverse") + 1 :]  # after the features, frame_idx and reverse
        st = {i["name"]: np.full(i["shape"], -1 if i["name"].endswith("_frame") else 0, i["dtype"]) for i in inputs}
        st["num_frames"] = np.asarray(num_frames, np.int32)
        return st

    def track(
        self, frames: np.ndarray, coords: np.ndarray, labels: np.ndarray, memories: dict | None = None
    ) -> dict[int, tuple[np.ndarray, ...]]:
        """Prompt frame 0, track frames 1 … T-1.

        Args:
          frames: (T, S, S, 3) float32, normalised model inputs.
          coords: (1, N, 2) float32 clicks in model-input pixels; labels: (1, N) int32.
          memories: a diagnostic: frame -> (hw, mem_dim) memory stored in place of the one the graphs computed for
            that frame (e.g. the live predictor's, to measure what the bfloat16 memories carry from frame to frame).
        Returns:
          frame -> (low-res logits (1, 1, 4h, 4w), object score logits (1, 1), the frame's memory (hw, mem_dim)
          float32 holding bfloat16 values).
        """
        memories = memories or {}
        feats = self.run("image_encoder", frames[:1])
        pred_masks, score, ptr, mem = self.run("prompt", *feats, coords, labels)
        out = {0: (pred_masks, score, mem[0])}
        st = self.empty_state(len(frames))
        st["cond_mem"][0, 0], st["cond_ptr"][0, 0] = memories.get(0, mem[0]), ptr[0]
        st["cond_frame"][0, 0], st["cond_valid"][0, 0] = 0, True
        st["cond_pred_masks"][0, 0], st["cond_obj_score"][0, 0] = pred_masks[0, 0], score[0, 0]
        for t in range(1, len(frames)):
            feats = self.run("image_encoder", frames[t : t + 1])
            res = self.run("track_step", *feats, np.int32(t), np.bool_(False), *st.values())
            st = dict(zip(st, res[: len(st)], strict=True))
            slot = t % st["recent_mem"].shape[1]  # engine.write_recent's ring slot
            out[t] = (*res[len(st) :], st["recent_mem"][0, slot].copy())
            if t in memories:
                st["recent_mem"] = st["recent_mem"].copy()
                st["recent_mem"][0, slot] = memories[t]
        return out
