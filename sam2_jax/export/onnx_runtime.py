"""Track a video with the ONNX graphs of ``sam2_jax.export.onnx_export``: numpy and ``onnxruntime`` only (no JAX).

``OnnxTracker(folder)`` answers, for one object and forward tracking, what ``SAM2VideoPredictor`` does:
``init_state(frames)``, ``add_points(video, t, coords, labels)`` (``prompt.onnx`` on a frame never tracked,
``prompt_tracked.onnx`` on a tracked frame: a correction, with the object's memory) and ``propagate(video)`` (from
the first prompted frame to the last frame: each frame the encoder graph, then ``track_step.onnx`` carrying the
``TrackerState`` fields from one call to the next; a prompted frame passes its prompt result through, as in the live
scan). The state a graph starts from is built from the stored outputs as ``SAM2VideoPredictor.tracker_state``
builds it (the closest prompted frames, the outputs of the frames before). ``track(frames, coords, labels)``: a
prompt on frame 0, then propagation. Not here: several objects, reverse tracking, more prompted frames than the
graphs' conditioning slots, boxes with clicks in one call (the graphs take a fixed number of points).
"""

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from sam2_jax.export import names
from sam2_jax.tracker import host_state


@dataclass
class OnnxVideo:
    """One video, one object: the frames and the outputs stored per frame (each a dict ``pred_masks`` (1, 1, 4h, 4w),
    ``object_score_logits`` (1, 1), ``obj_ptr`` (1, C), ``maskmem`` (hw, mem_dim) bfloat16 values in float32: the
    memory the state holds, and ``graph_maskmem``: the one the graph computed, the same unless a diagnostic stored
    another in its place)."""

    frames: np.ndarray  # (T, S, S, 3) float32, normalised
    cond: dict = field(default_factory=dict)  # prompted frames' outputs
    non_cond: dict = field(default_factory=dict)  # tracked frames' outputs
    tracked: set = field(default_factory=set)

    def output(self, t: int) -> dict | None:
        return self.cond.get(t) or self.non_cond.get(t)


class OnnxTracker:
    """The ONNX graphs of an export folder, as ``onnxruntime`` CPU sessions."""

    def __init__(self, folder: str | pathlib.Path) -> None:
        import onnxruntime as ort

        self.folder = pathlib.Path(folder)
        try:
            self.manifest = json.loads((self.folder / names.ONNX_MANIFEST).read_text())
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
        """The tracking graphs' state inputs with every slot invalid."""
        g = self.manifest["graphs"][names.ONNX_TRACK_STEP]
        inputs = [i["name"] for i in g["inputs"]]
        inputs = g["inputs"][inputs.index("reverse") + 1 :]  # after the features, frame_idx and reverse
        st = {i["name"]: np.full(i["shape"], -1 if i["name"].endswith("_frame") else 0, i["dtype"]) for i in inputs}
        st["num_frames"] = np.asarray(num_frames, np.int32)
        return st

    def init_state(self, frames: np.ndarray) -> OnnxVideo:
        """``frames``: (T, S, S, 3) float32, normalised model inputs (``sam2_jax.video.video_io.preprocess_frame``)."""
        return OnnxVideo(np.asarray(frames, np.float32))

    def tracker_state(self, v: OnnxVideo, t: int) -> dict[str, np.ndarray]:
        """The state seen from frame ``t`` tracking forward (``SAM2VideoPredictor.tracker_state`` for one object):
        the prompted frames in the conditioning slots, the outputs of the frames before ``t`` in the rings."""
        st = self.empty_state(len(v.frames))
        K = st["cond_frame"].shape[1]
        if len(v.cond) > K:
            raise ValueError(f"{len(v.cond)} prompted frames: the graphs were exported with {K} conditioning slots")
        host_state.write_cond(st, 0, v.cond, t, host_state.read_dict)
        host_state.write_recent(st, 0, t, False, v.non_cond.get, host_state.read_dict)
        return st

    def add_points(
        self, v: OnnxVideo, t: int, coords: np.ndarray, labels: np.ndarray, memory: np.ndarray | None = None
    ) -> dict:
        """Clicks on frame ``t`` (all of that frame's points: ``coords`` (1, N, 2) float32 in model-input pixels,
        ``labels`` (1, N) int32); the frame becomes a prompted frame. ``memory``: a diagnostic, stored in place of the
        one the graph computed (see ``propagate``). Returns the frame's output."""
        feats = self.run(names.ONNX_IMAGE_ENCODER, v.frames[t : t + 1])
        if t not in v.tracked:
            pred_masks, score, ptr, mem = self.run(names.ONNX_PROMPT, *feats, coords, labels)
        else:
            prev = np.clip(v.output(t)["pred_masks"], -32.0, 32.0)
            st = self.tracker_state(v, t)
            args = (*feats, np.int32(t), np.bool_(False), *st.values(), coords, labels, prev)
            pred_masks, score, ptr, mem = self.run(names.ONNX_PROMPT_TRACKED, *args)
        out = {"pred_masks": pred_masks, "object_score_logits": score, "obj_ptr": ptr, "graph_maskmem": mem[0]}
        v.cond[t] = out | {"maskmem": mem[0] if memory is None else memory}
        v.non_cond.pop(t, None)
        return v.cond[t]

    def propagate(self, v: OnnxVideo, memories: dict | None = None) -> dict[int, dict]:
        """Track from the first prompted frame to the last frame; returns and stores every frame's output.

        ``memories``: a diagnostic: frame -> (hw, mem_dim) memory stored in place of the one the graph computed for
        that tracked frame (e.g. the live predictor's, to measure what the bfloat16 memories carry from frame to
        frame)."""
        memories = memories or {}
        if not v.cond:
            raise ValueError("no prompt: add_points first")
        start = min(v.cond)
        st = self.tracker_state(v, start)
        n = len(st)
        outs = {}
        for t in range(start, len(v.frames)):
            feats = self.run(names.ONNX_IMAGE_ENCODER, v.frames[t : t + 1])
            res = self.run(names.ONNX_TRACK_STEP, *feats, np.int32(t), np.bool_(False), *st.values())
            st = dict(zip(st, res[:n], strict=True))
            v.tracked.add(t)
            if t in v.cond:  # the graph passed the prompt result through and wrote no memory
                outs[t] = v.cond[t]
                continue
            r, p = t % st["recent_mem"].shape[1], t % st["ptr"].shape[1]  # rings.write_recent's ring slots
            own = st["recent_mem"][0, r].copy()
            if t in memories:
                st["recent_mem"] = st["recent_mem"].copy()
                st["recent_mem"][0, r] = memories[t]
            out = {"pred_masks": res[n], "object_score_logits": res[n + 1], "obj_ptr": st["ptr"][0, p][None].copy()}
            out["graph_maskmem"] = own
            outs[t] = v.non_cond[t] = out | {"maskmem": st["recent_mem"][0, r].copy()}
        return outs

    def track(
        self, frames: np.ndarray, coords: np.ndarray, labels: np.ndarray, memories: dict | None = None
    ) -> dict[int, dict]:
        """Clicks on frame 0, then propagation: frame -> output (``memories`` as in ``propagate``, frame 0's too)."""
        memories = memories or {}
        v = self.init_state(frames)
        self.add_points(v, 0, coords, labels, memories.get(0))
        return self.propagate(v, memories)
