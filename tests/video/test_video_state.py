"""The video predictor's host state without a model: ``OutputStore``'s budget, eviction and recomputation, and
``InferenceState``'s official dict interface."""

import numpy as np
import pytest

from sam2_jax.video.video_state import COND, NON_COND, FrameOutput, InferenceState, OutputStore


def _out(value: float = 0.0, memory: bool = True) -> FrameOutput:
    """An output of 8 + 8 + 4 (+ 16 with a memory) bytes whose arrays are filled with ``value``."""
    return FrameOutput(
        np.full((1, 1, 1, 2), value, np.float32),
        np.full((1, 2), value, np.float32),
        np.full((1, 1), value, np.float32),
        np.full((4,), value, np.float32) if memory else None,
    )


UNIT = _out().nbytes()  # 36


def _exact(store: OutputStore) -> int:
    return sum(o.nbytes() for d in store.per_obj.values() for k in d for o in d[k].values())


def _store(budget_units: float, num_objects: int = 1) -> OutputStore:
    store = OutputStore(int(budget_units * UNIT))
    for o in range(num_objects):
        store.add_object(o)
    return store


def test_bytes_are_counted_exactly_through_put_replace_pop_and_renumbering():
    store = _store(100, num_objects=3)
    store.put(0, 1, _out(memory=False))
    assert store.nbytes == UNIT - 16
    store.put(0, 1, _out())  # a replacement counts the difference
    store.put(1, 1, _out(), cond=True)
    store.put(2, 5, _out())
    assert store.nbytes == _exact(store) == 3 * UNIT
    assert store.pop(0, 1).nbytes() == UNIT and store.pop(0, 1) is None and store.pop(1, 1) is None
    assert store.nbytes == _exact(store) == 2 * UNIT
    store.keep_objects([2, 1])
    assert sorted(store.per_obj) == [0, 1] and list(store.non_cond(0)) == [5] and list(store.cond(1)) == [1]
    assert store.nbytes == _exact(store) == 2 * UNIT
    store.clear()
    assert store.per_obj == {} and store.nbytes == 0


def test_evict_drops_the_frames_farthest_from_the_current_one_until_within_budget():
    store = _store(5.5, num_objects=2)
    store.put(0, 0, _out(), cond=True)  # conditioning outputs count but are never dropped
    for t in range(1, 7):
        store.put(0, t, _out())
    store.put(1, 3, _out())
    store.evict(current=6)
    assert store.nbytes == _exact(store) == 5 * UNIT
    # 7 non-cond + 1 cond outputs, 5 fit: frames 1, 2 of obj 0 go, then frame 3 of obj 1 (at equal distance the
    # higher object index goes first), and then it fits
    assert list(store.cond(0)) == [0]
    assert sorted(store.non_cond(0)) == [3, 4, 5, 6] and store.non_cond(1) == {}
    store.evict(current=6)  # within budget: nothing more goes
    assert sorted(store.non_cond(0)) == [3, 4, 5, 6]


def test_evict_prefers_later_frames_at_equal_distance_and_spares_keep():
    store = _store(2)
    for t in (2, 4, 6):
        store.put(0, t, _out())
    store.evict(current=4)  # 2 and 6 are equally far: the later one goes
    assert sorted(store.non_cond(0)) == [2, 4]
    store.put(0, 9, _out())
    store.evict(current=2, keep=9)  # 9 is farthest but kept: the next farthest goes
    assert sorted(store.non_cond(0)) == [2, 9]


def test_memory_recomputes_a_dropped_frame_stores_it_and_keeps_it_while_evicting():
    store = _store(3)
    for t in (0, 1, 2):
        store.put(0, t, _out(float(t)))
    store.put(0, 3, _out(3.0), cond=True)
    store.evict(current=2)  # one conditioning and two non-conditioning outputs fit: frame 0 goes
    assert sorted(store.non_cond(0)) == [1, 2]
    calls = []

    def recompute(obj_idx, frame_idx):
        calls.append((obj_idx, frame_idx))
        return _out(10.0 + frame_idx)

    tracked = {0: {"reverse": False}, 1: {}, 2: {}, 3: {}}
    assert store.memory(0, 1, tracked, recompute).obj_ptr[0, 0] == 1.0  # stored: no recompute
    assert store.memory(0, 3, tracked, recompute) is None  # a conditioning frame is no non-cond memory
    assert store.memory(0, 7, tracked, recompute) is None  # never tracked: nothing to recompute
    assert calls == []
    out = store.memory(0, 0, tracked, recompute)
    assert calls == [(0, 0)] and out.obj_ptr[0, 0] == 10.0
    # stored again; the budget is enforced around frame 0, so frame 2 (the farthest) goes
    assert store.non_cond(0)[0] is out and sorted(store.non_cond(0)) == [0, 1]
    assert store.nbytes == _exact(store) == 3 * UNIT
    assert store.memory(0, 0, tracked, recompute) is out and calls == [(0, 0)]
    # with room for the conditioning output only, a recomputed frame is still kept (the others go)
    store.budget_bytes = UNIT
    out2 = store.memory(0, 2, tracked, recompute)
    assert calls[-1] == (0, 2) and store.non_cond(0) == {2: out2} and list(store.cond(0)) == [3]


def test_memory_stores_nothing_when_recompute_has_no_output():
    store = _store(10)
    assert store.memory(0, 4, {4: {"reverse": True}}, lambda o, f: None) is None
    assert store.non_cond(0) == {} and store.nbytes == 0


def test_memory_does_not_recurse_into_a_frame_being_recomputed():
    # Frames tracked both ways around conditioning frames, all dropped: each one's re-tracking needs the other's
    # memory. The inner request for the frame already being recomputed gets no memory instead of recursing.
    store = _store(10)
    tracked = {1: {"reverse": False}, 2: {"reverse": True}}
    calls = []

    def recompute(obj_idx, frame_idx):
        calls.append(frame_idx)
        other = store.memory(obj_idx, 3 - frame_idx, tracked, recompute)
        return _out(frame_idx + (0.0 if other is None else 10 * float(other.obj_ptr[0, 0])))

    out = store.memory(0, 1, tracked, recompute)
    assert calls == [1, 2]
    assert store.non_cond(0)[2].obj_ptr[0, 0] == 2.0  # made without frame 1's memory
    assert out.obj_ptr[0, 0] == 21.0 and store.non_cond(0)[1] is out
    assert store.memory(0, 2, tracked, recompute).obj_ptr[0, 0] == 2.0 and calls == [1, 2]


def _state(num_frames=8) -> InferenceState:
    return InferenceState(images=None, num_frames=num_frames, video_height=6, video_width=10, store=_store(10, 0))


def test_inference_state_answers_the_official_keys():
    s = _state()
    assert s.add_object(7) == 0 and s.add_object(3) == 1
    s.store.put(1, 2, _out(), cond=True)
    official = [
        "images",
        "num_frames",
        "video_height",
        "video_width",
        "obj_ids",
        "obj_id_to_idx",
        "obj_idx_to_id",
        "point_inputs_per_obj",
        "mask_inputs_per_obj",
        "output_dict_per_obj",
        "temp_output_dict_per_obj",
        "frames_tracked_per_obj",
        "cached_features",
        "offload_video_to_cpu",
        "offload_state_to_cpu",
        "device",
    ]
    for key in official:
        assert key in s and key in s.keys()
        assert s[key] is getattr(s, key) and s.get(key) is getattr(s, key)
    assert (s["num_frames"], s["video_height"], s["video_width"]) == (8, 6, 10)
    assert s["obj_ids"] == [7, 3] and s["obj_id_to_idx"] == {7: 0, 3: 1} and s["obj_idx_to_id"] == {0: 7, 1: 3}
    assert s["output_dict_per_obj"][1][COND][2] is s.store.cond(1)[2]
    assert s["temp_output_dict_per_obj"][0] == {COND: {}, NON_COND: {}}
    assert s["store_bytes"] == UNIT and s["stream_tstate"] is None
    assert "device" in s and s["device"] is None  # the predictor's init_state sets the model's jax.Device
    assert "constants" not in s and s.get("constants", "absent") == "absent"
    with pytest.raises(KeyError, match="'constants' is not an inference-state entry"):
        s["constants"]
    s["num_frames"] = 5  # as the official code sets it
    assert s.num_frames == 5
    with pytest.raises(KeyError, match="cannot be set"):
        s["store_bytes"] = 0
    assert s == s and s != _state()  # a state is equal only to itself


def test_inference_state_renumbers_and_clears_objects():
    s = _state()
    for obj_id in ("a", "b", "c"):
        s.add_object(obj_id)
    s.point_inputs_per_obj[2][4] = "clicks of c"
    s.frames_tracked_per_obj[0][6] = {"reverse": False}
    s.mask_inputs_per_obj[1][7] = "mask of b"
    s.store.put(2, 1, _out())
    assert s.last_touched_frame() == 7
    s.keep_objects([0, 2])
    assert s.obj_ids == ["a", "c"] and s.obj_id_to_idx == {"a": 0, "c": 1} and s.obj_idx_to_id == {0: "a", 1: "c"}
    assert s.point_inputs_per_obj == {0: {}, 1: {4: "clicks of c"}} and list(s.store.non_cond(1)) == [1]
    assert s.num_objects == 2 and s.last_touched_frame() == 6
    s.clear_objects()
    assert s.obj_ids == [] and s["output_dict_per_obj"] == {} and s["store_bytes"] == 0
    assert s.frames_tracked_per_obj == {} and s.last_touched_frame() == -1
