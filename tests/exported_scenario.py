"""The calls the export tests make on a live predictor and on the exported runtime alike (numpy only: the runtime's
subprocess imports this and must not import Flax or the model code)."""

import numpy as np

CLICK = np.array([[210, 350]], np.float32)
CORRECTION = np.array([[250, 220]], np.float32)
BOX = np.array([100, 200, 400, 450], np.float32)
CORRECTION_FRAME = 6


def image_calls(pred, image: np.ndarray) -> dict[str, np.ndarray]:
    """A click (three masks) and a box (one mask) on an image: logits, scores and low-res logits of each."""
    pred.set_image(image)
    out = {}
    for name, kwargs in (
        ("click", dict(point_coords=CLICK, point_labels=np.array([1]))),
        ("box", dict(box=BOX, multimask_output=False)),
    ):
        masks, scores, low = pred.predict(return_logits=True, **kwargs)
        out |= {f"{name}_masks": masks, f"{name}_scores": scores, f"{name}_low_res": low}
    return out


def video_calls(pred, state, stored) -> dict[str, np.ndarray]:
    """A click on frame 0, propagation, a negative click on frame 6 (a correction), re-propagation: every returned
    video-resolution logit map, and after each propagation every frame's stored low-res logits, object score, object
    pointer and memory (``stored(state, t)`` -> (pred_masks, object_score_logits, obj_ptr, maskmem (hw, mem_dim)
    bfloat16, returned as float32: exact))."""
    out = {}
    _, _, out["prompt_0"] = pred.add_new_points_or_box(state, 0, 1, points=CLICK, labels=np.array([1], np.int32))
    for rnd in ("first", "second"):
        for t, _, masks in pred.propagate_in_video(state):
            out[f"{rnd}_video_{t}"] = masks
            for name, x in zip(("low_res", "score", "ptr", "maskmem"), stored(state, t), strict=True):
                out[f"{rnd}_{name}_{t}"] = np.asarray(x, np.float32)
        if rnd == "first":
            _, _, out["correction"] = pred.add_new_points_or_box(
                state, CORRECTION_FRAME, 1, points=CORRECTION, labels=np.array([0], np.int32), clear_old_points=False
            )
    return out


def objects_calls(pred, state, stored) -> dict[str, np.ndarray]:
    """Two objects, a click on frame 0 (object 1) and a box on frame 2 (object 2), forward from frame 0, then
    reverse from the last frame: every returned video-resolution logit map, and after each propagation each object's
    stored low-res logits, object score and pointer on every frame (``stored(state, obj_index, t)`` -> (pred_masks,
    object_score_logits, obj_ptr))."""
    out = {}
    _, _, out["prompt_1"] = pred.add_new_points_or_box(state, 0, 1, points=CLICK, labels=np.array([1], np.int32))
    _, _, out["prompt_2"] = pred.add_new_points_or_box(state, 2, 2, box=BOX)
    last = state.num_frames - 1
    for rnd, kwargs in (("forward", {}), ("reverse", {"start_frame_idx": last, "reverse": True})):
        for t, obj_ids, masks in pred.propagate_in_video(state, **kwargs):
            assert list(obj_ids) == [1, 2]
            out[f"{rnd}_video_{t}"] = masks
        for o in range(2):
            for t in range(last + 1):
                for name, x in zip(("low_res", "score", "ptr"), stored(state, o, t), strict=True):
                    out[f"{rnd}_{name}_{o}_{t}"] = np.asarray(x, np.float32)
    return out
