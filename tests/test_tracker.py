"""Tracker behaviour that needs no reference: fixed-size state, bounded host store, live sources, sharding over
devices, bad input. A small model (image_size 256, random weights) keeps these fast; parity with the official
predictor is in test_sam2_video_predictor.py."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from tests import measured
from tests.reference import REPO

# Chunks of 1 (live, stream) and 4 (propagation) compile to different float summation orders: 1.2e-5 seen by frame 6.
STREAM_ATOL = 1e-4


def small_predictor(**kwargs):
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    model = _small_model()
    return SAM2VideoPredictor(model, **kwargs)


@functools.lru_cache(maxsize=1)
def _small_model():
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs import get_config

    cfg = get_config("sam2.1_hiera_t")
    cfg.model.image_size = 256
    return build_sam2(cfg, None, seed=3)


def _video(n, h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frames = []
    for t in range(n):
        f = base.copy()
        f[20 + t % 10 : 60 + t % 10, 30:80] = [250, 30, 30]  # a moving red block
        frames.append(f)
    return np.stack(frames)


def _track(pred, video, n_obj=1):
    state = pred.init_state(video)
    for o in range(n_obj):
        pred.add_new_points_or_box(
            state, 0, o + 1, points=np.array([[50 + 5 * o, 40]], np.float32), labels=np.array([1], np.int32)
        )
    return state, {t: m for t, _, m in pred.propagate_in_video(state)}


def test_state_is_fixed_size_and_store_is_bounded():
    from sam2_jax.tracker.state import state_nbytes

    pred = small_predictor(store_budget_mb=0.5)
    sizes = []
    for n in (6, 14):
        state, masks = _track(pred, _video(n))
        assert sorted(masks) == list(range(n))
        assert state["store_bytes"] <= pred.store_budget_bytes
        ts = pred.tracker_state(state, [0], n - 1, False)  # recomputes what the budget dropped, within budget
        assert state["store_bytes"] <= pred.store_budget_bytes
        sizes.append((state_nbytes(ts), jax.tree.map(np.shape, ts)))
    assert sizes[0] == sizes[1]


@pytest.mark.slow
def test_live_source_equals_array_source():
    pred = small_predictor()
    # A live source has no length, so pointers are encoded as in a video of >= max_obj_ptrs_in_encoder (16) frames.
    video = _video(17)
    _, ref = _track(pred, video)
    _, live = _track(pred, iter(list(video)))
    assert sorted(live) == sorted(ref)
    for t in ref:
        np.testing.assert_allclose(live[t], ref[t], atol=STREAM_ATOL, rtol=0, err_msg=f"frame {t}")


def test_a_live_source_pass_ends_with_the_source(monkeypatch):
    """The pass over a live source (no length) ends when the source does: the state learns the length and the
    policy's ``end_pass`` gets the frames tracked, not the order's bound (listing that bound took 16 GB)."""
    pred = small_predictor()
    seen = []
    monkeypatch.setattr(type(pred.policy), "end_pass", lambda self, s, order: seen.append(list(order)))
    state, masks = _track(pred, iter(list(_video(3))))
    assert sorted(masks) == [0, 1, 2] and state.num_frames == 3
    assert seen == [[0, 1, 2]]


def test_evicted_memories_are_recomputed_for_a_correction():
    pred_full, pred_small = small_predictor(), small_predictor(store_budget_mb=0.3)
    outs = []
    for pred in (pred_full, pred_small):
        state, _ = _track(pred, _video(12))
        # correction late in the video needs the memories of frames 4..9, dropped by the small budget
        _, _, m = pred.add_new_points_or_box(
            state,
            10,
            1,
            points=np.array([[60, 50]], np.float32),
            labels=np.array([0], np.int32),
            clear_old_points=False,
        )
        outs.append(m)
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-4, rtol=0)


def test_dropped_frames_tracked_both_ways_are_recomputed_without_recursing():
    # Frames tracked forward and in reverse around the conditioning frames, then dropped by the budget: recomputing
    # one needs the memory of another whose recomputation needs the first. This recursed without end.
    pred = small_predictor(store_budget_mb=0.3)
    state = pred.init_state(_video(12))
    pred.add_new_points_or_box(state, 0, 1, points=np.array([[50, 40]], np.float32), labels=np.array([1], np.int32))
    pred.add_new_points_or_box(state, 3, 2, box=np.array([20, 15, 90, 70], np.float32))
    list(pred.propagate_in_video(state))
    pred.add_new_mask(state, 6, 3, np.pad(np.ones((30, 40), bool), ((20, 46), (30, 58))))
    list(pred.propagate_in_video(state, start_frame_idx=11, reverse=True))
    list(pred.propagate_in_video(state, start_frame_idx=2, max_frame_num_to_track=5))
    pred.remove_object(state, 1)
    frames = list(pred.propagate_in_video(state))
    assert [t for t, _, _ in frames] == list(range(3, 12)) and all(ids == [2, 3] for _, ids, _ in frames)
    assert all(np.isfinite(m).all() for _, _, m in frames) and state.store.nbytes <= pred.store_budget_bytes


def test_bad_input_raises_and_state_stays_usable():
    pred = small_predictor()
    state = pred.init_state(_video(4))
    with pytest.raises(ValueError, match="No input points or masks"):
        list(pred.propagate_in_video(state))
    with pytest.raises(ValueError, match="frame_idx 9 is outside the video"):
        pred.add_new_points_or_box(state, 9, 1, points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="outside the 128x96 video frame"):
        pred.add_new_points_or_box(state, 0, 1, points=[[500, 1]], labels=[1])
    with pytest.raises(ValueError, match="points and labels must be provided together"):
        pred.add_new_points_or_box(state, 0, 1, points=[[1, 1]])
    with pytest.raises(ValueError, match="mask shape"):
        pred.add_new_mask(state, 0, 1, np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="unknown obj_id 42"):
        pred.clear_all_prompts_in_frame(state, 0, 42)
    with pytest.raises(ValueError, match="cannot remove object id 42"):
        pred.remove_object(state, 42, strict=True)
    with pytest.raises(ValueError, match="does not exist|no frames|empty"):
        pred.init_state("/nonexistent/video/folder")
    # still usable
    _, ids, m = pred.add_new_points_or_box(state, 0, 1, points=[[50, 40]], labels=[1])
    assert ids == [1] and m.shape == (1, 1, 96, 128)
    assert len(list(pred.propagate_in_video(state))) == 4


SHARD_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, jax
    sys.path.insert(0, {repo!r})
    from tests.test_tracker import small_predictor, _track, _video
    pred = small_predictor()
    assert jax.device_count() == {n}, jax.device_count()
    state, masks = _track(pred, _video({frames}), n_obj={n_obj})
    np.save({out!r}, np.stack([masks[t] for t in sorted(masks)]))
    """
)


@pytest.mark.parametrize(
    "devices,n_obj,frames", [(2, 2, 3), pytest.param(8, 8, 4, marks=pytest.mark.slow)], ids=["2dev", "8dev"]
)
def test_same_masks_on_1_and_n_devices(devices, n_obj, frames, tmp_path):
    """The object axis sharded over forced host devices gives the masks of the single-device run."""
    # the single-device run here (one CPU device), the sharded one in a child with forced host devices
    assert jax.device_count() == 1
    _, ref = _track(small_predictor(), _video(frames), n_obj=n_obj)
    ref = np.stack([ref[t] for t in sorted(ref)])
    out = tmp_path / f"masks_{devices}.npy"
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    script = SHARD_SCRIPT.format(repo=str(REPO), n=devices, out=str(out), frames=frames, n_obj=n_obj)
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=1200)
    assert ref.shape == (frames, n_obj, 1, 96, 128)
    measured.max_abs("mask_logits", np.load(out), ref, 1e-4)


def test_stream_equals_propagation_and_takes_new_objects():
    """``track_frame`` on a pushed stream gives the masks of ``propagate_in_video`` over the same frames, also
    after an object is added mid-stream; the device state is carried between calls, not rebuilt."""
    pred = small_predictor()
    # Pointer encodings are scaled by min(num_frames, 16) - 1 (official); a stream has no length, like a long video.
    video = _video(17)
    click = dict(points=np.array([[50, 40]], np.float32), labels=np.array([1], np.int32))
    box = dict(box=np.array([30, 20, 80, 60], np.float32))

    # reference: the same prompts on an array source, propagated in two passes
    ref_state = pred.init_state(video)
    pred.add_new_points_or_box(ref_state, 0, 1, **click)
    ref = {t: m for t, _, m in pred.propagate_in_video(ref_state, max_frame_num_to_track=3)}
    pred.add_new_points_or_box(ref_state, 3, 2, **box)
    ref2 = {t: m for t, _, m in pred.propagate_in_video(ref_state, start_frame_idx=3, max_frame_num_to_track=3)}

    state = pred.init_stream(video[0])
    _, ids, m0 = pred.add_new_points_or_box(state, 0, 1, **click)
    np.testing.assert_allclose(m0, ref[0], atol=STREAM_ATOL, rtol=0)
    for t in (1, 2, 3):
        ft, ids, m = pred.track_frame(state, video[t])
        assert (ft, ids) == (t, [1])
        np.testing.assert_allclose(m, ref[t], atol=STREAM_ATOL, rtol=0, err_msg=f"frame {t}")
    assert state["stream_tstate"] is not None
    _, ids, _ = pred.add_new_points_or_box(state, 3, 2, **box)
    assert ids == [1, 2] and state["stream_tstate"] is None  # a new prompt rebuilds the carried memory once
    for t in (4, 5, 6):
        ft, ids, m = pred.track_frame(state, video[t])
        assert (ft, ids) == (t, [1, 2]) and m.shape == (2, 1, 96, 128)
        np.testing.assert_allclose(m, ref2[t], atol=STREAM_ATOL, rtol=0, err_msg=f"frame {t}")
    with pytest.raises(ValueError, match="call track_frame, not propagate_in_video"):
        list(pred.propagate_in_video(state))
    with pytest.raises(ValueError, match="needs the new frame"):
        pred.track_frame(state)
    with pytest.raises(ValueError, match="frame 7 of the stream is 128x50 but frame 0 is 128x96"):
        pred.track_frame(state, video[0, :50])
    with pytest.raises(ValueError, match=r"frame 7 of the stream must be an \(H, W, 3\) uint8"):
        pred.track_frame(state, video[0].astype(np.float32))
    # bad frames are not counted: the stream goes on at frame 7
    ft, ids, m = pred.track_frame(state, video[7])
    assert (ft, ids) == (7, [1, 2]) and m.shape == (2, 1, 96, 128)


def _prompt(pred, state, frame_idx, n_obj):
    for o in range(n_obj):
        pts = np.array([[50 + 5 * o, 40 - 3 * o]], np.float32)
        pred.add_new_points_or_box(state, frame_idx, o + 1, points=pts, labels=np.array([1], np.int32))


def test_batch_of_videos_equals_one_at_a_time():
    """``propagate_in_videos`` (one program over a batch of videos of different lengths, sizes, object counts and
    start frames, two slots refilled as videos end) yields what ``propagate_in_video`` yields for each video alone,
    keeps the same per-frame outputs, and leaves each state ready for a correction. The third video takes the first
    free slot with more conditioning slots than the batch (every slot is re-padded); the first video's second pass
    (``next_pass``, after a new object on frame 4) waits for its first pass to be yielded."""
    from sam2_jax.sam2_video_predictor import VideoPass

    pred = small_predictor(chunk_size=2)
    videos = [_video(6), _video(9, 80, 112, seed=1), _video(4, seed=2)]
    setups = [(0, 1), (2, 3), (1, 2)]  # (prompted frame, objects)
    alone, batched = [], []
    for video, (t0, n) in zip(videos, setups, strict=True):
        a, b = pred.init_state(video), pred.init_state(video)
        for s in (a, b):
            _prompt(pred, s, t0, n)
        alone.append(a)
        batched.append(b)
    for s in (alone[2], batched[2]):  # a second conditioning frame: 2 slots, the batch had 1
        pred.add_new_points_or_box(s, 3, 1, points=np.array([[70, 30]], np.float32), labels=np.array([1], np.int32))
    later = lambda s: pred.add_new_mask(s, 4, 9, np.pad(np.ones((30, 40), bool), ((30, 36), (50, 38))))
    ref = [{} for _ in videos]
    ref[0] = {t: m for t, _, m in pred.propagate_in_video(alone[0], max_frame_num_to_track=3)}
    later(alone[0])
    ref0_ids = {}
    for t, ids, m in pred.propagate_in_video(alone[0], start_frame_idx=4):
        ref0_ids[t], ref[0][t] = ids, m
    ref[1] = {t: m for t, _, m in pred.propagate_in_video(alone[1], max_frame_num_to_track=5)}
    ref[2] = {t: m for t, _, m in pred.propagate_in_video(alone[2])}

    def next_pass(v):
        if v == 0 and 9 not in batched[0].obj_ids:
            assert order[0] == [0, 1, 2, 3]  # the first pass was yielded in full
            later(batched[0])
            return 4, None
        return None

    got = [{} for _ in videos]
    order = [[] for _ in videos]
    runs = pred.propagate_in_videos(
        batched, max_frame_num_to_track=[3, 5, None], videos_per_step=2, next_pass=next_pass
    )
    for v, t, ids, m in runs:
        assert ids == (ref0_ids[t] if v == 0 and t >= 4 else list(range(1, setups[v][1] + 1)))
        got[v][t] = m
        order[v].append(t)
    assert order == [list(range(0, 6)), list(range(2, 8)), list(range(1, 4))]
    for v in range(len(videos)):
        for t in order[v]:
            np.testing.assert_allclose(got[v][t], ref[v][t], atol=STREAM_ATOL, rtol=0, err_msg=f"video {v} frame {t}")
            for o in range(batched[v].num_objects):
                mine = batched[v]["output_dict_per_obj"][o]["non_cond_frame_outputs"].get(t)
                theirs = alone[v]["output_dict_per_obj"][o]["non_cond_frame_outputs"].get(t)
                assert (mine is None) == (theirs is None)
                if mine is not None:
                    np.testing.assert_allclose(mine.obj_ptr, theirs.obj_ptr, atol=STREAM_ATOL, rtol=0)
    # a correction after the batched run continues as after a single run
    fix = dict(points=np.array([[60, 50]], np.float32), labels=np.array([0], np.int32), clear_old_points=False)
    outs = []
    for s in (alone[1], batched[1]):
        pred.add_new_points_or_box(s, 3, 1, **fix)
        outs.append({t: m for t, _, m in pred.propagate_in_video(s, start_frame_idx=3, max_frame_num_to_track=2)})
    for t in outs[0]:
        np.testing.assert_allclose(outs[1][t], outs[0][t], atol=STREAM_ATOL, rtol=0, err_msg=f"corrected frame {t}")
    # a generator of VideoPasses, read as slots free up
    passes = (VideoPass(s, 1, 1) for s in batched[1:])
    assert [(v, t) for v, t, _, _ in pred.propagate_in_videos(passes, videos_per_step=2)] == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    with pytest.raises(ValueError, match="2 values for 3 videos"):
        list(pred.propagate_in_videos(batched, start_frame_idx=[0, 1]))
    with pytest.raises(ValueError, match="needs videos_per_step"):
        list(pred.propagate_in_videos(iter(batched)))


RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, numpy as np
    sys.path.insert(0, {repo!r})
    from tests.test_tracker import small_predictor, write_mp4
    from sam2_jax.tracker.state import state_nbytes
    write_mp4({path!r}, {n})
    pred = small_predictor(store_budget_mb=1.0)
    state = pred.init_state({path!r})
    pred.add_new_points_or_box(state, 0, 1, points=np.array([[50, 40]], np.float32), labels=np.array([1], np.int32))
    peak = {{}}
    for t, _, m in pred.propagate_in_video(state):
        if t + 1 in (100, {n}):
            peak[t + 1] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("PEAK", peak[100], peak[{n}], state["store_bytes"])
    """
)


def write_mp4(path, n: int) -> None:
    """An H.264 clip of ``_video(n)``'s moving block, encoded frame by frame (nothing held in memory)."""
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for t in range(n):
            f = base.copy()
            f[20 + t % 10 : 60 + t % 10, 30:80] = [250, 30, 30]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


@pytest.mark.slow
def test_peak_memory_of_400_frames_equals_100_frames(tmp_path, capsys):
    """Propagating an MP4 of 400 frames: the process's peak RSS after frame 400 is that after frame 100 (within
    8 MB), with the host store's budget (1 MB here) already reached by frame 100. Measured: equal to the byte."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    script = RSS_SCRIPT.format(repo=str(REPO), path=str(tmp_path / "clip.mp4"), n=400)
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=1800, capture_output=True)
    line = [x for x in out.stdout.decode().splitlines() if x.startswith("PEAK")][-1]
    peak100, peak400, store = (int(v) for v in line.split()[1:])
    with capsys.disabled():
        print(f"\npeak RSS after 100 frames {peak100 / 2**20:.1f} MB, after 400 {peak400 / 2**20:.1f} MB")
    assert store <= 2**20
    assert peak400 - peak100 <= 8 * 2**20, (peak100, peak400)


def test_first_frames_attend_only_the_slots_in_use():
    """The tracking step (``engine.track_step``) skips a frame that conditions every object and attends only to the
    memory slots in use (``compact``): the same outputs and state as the full step (every slot, masked) frame by
    frame, from a start where the rings are empty, through frames where one object is conditioned and one tracked,
    to full rings; so does a correction click (``interact``) on an early frame."""
    import jax.numpy as jnp

    from sam2_jax.tracker import compiled, engine, memory
    from sam2_jax.tracker.step_config import StepConfig

    assert memory.slot_buckets(7) == (1, 7) and memory.slot_buckets(22) == (1, 22) and memory.slot_buckets(1) == (1,)
    pred = small_predictor()
    s = pred.init_state(_video(10))
    _prompt(pred, s, 0, 2)  # both objects conditioned on frame 0, the second one on frame 3 as well
    pred.add_new_points_or_box(s, 3, 2, points=np.array([[60, 45]], np.float32), labels=np.array([1], np.int32))
    pred.propagate_in_video_preflight(s)  # the prompted frames' memories
    frames = list(range(10))
    images = jnp.asarray(np.stack([s.images[t] for t in frames]))
    reverse = jnp.bool_(False)
    fast_state, fast = jax.jit(engine.scan_frames, static_argnums=(0, 6))(
        pred.module,
        pred.params,
        pred.tracker_state(s, [0, 1], 0, False),
        images,
        jnp.asarray(frames),
        reverse,
        StepConfig(compact=True),
    )
    full_step = jax.jit(engine.track_features, static_argnums=0)  # compact=False: every slot, masked
    ref_state, ref = pred.tracker_state(s, [0, 1], 0, False), []
    for t in frames:
        feats = compiled.jit_frame_features(pred.module, pred.params, images[t][None])
        if t == 2:  # a correction click here (``interact``) attends to 2 of the 7 slots, compacted: the same output
            one = jax.tree.map(lambda x: x[:1] if x.ndim else x, ref_state)
            click = (jnp.asarray([[[100.0, 90.0]]]), jnp.asarray([[0]], jnp.int32), None, None)
            fix = [
                compiled.jit_interact(
                    pred.module, pred.params, one, feats, jnp.int32(t), reverse, *click, cfg=StepConfig(compact=c)
                )
                for c in (True, False)
            ]
            for a, b in zip(*fix, strict=True):
                np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
        ref_state, out = full_step(pred.module, pred.params, ref_state, feats, jnp.int32(t), reverse)
        ref.append(out)
    ref = jax.tree.map(lambda *x: np.stack(x), *ref)
    np.testing.assert_array_equal(fast.is_cond, ref.is_cond)
    assert fast.is_cond[0].all() and fast.is_cond[3].tolist() == [False, True]
    np.testing.assert_allclose(fast.pred_masks, ref.pred_masks, atol=1e-4, rtol=0)
    np.testing.assert_allclose(fast.obj_ptr, ref.obj_ptr, atol=1e-4, rtol=0)
    tracked = ~ref.is_cond
    np.testing.assert_allclose(
        np.asarray(fast.maskmem, np.float32)[tracked], np.asarray(ref.maskmem, np.float32)[tracked], atol=0.05, rtol=0
    )
    for name in ("recent_frame", "recent_valid", "ptr_frame", "ptr_valid", "cond_frame", "cond_valid"):
        np.testing.assert_array_equal(getattr(fast_state, name), getattr(ref_state, name), err_msg=name)
    np.testing.assert_allclose(fast_state.ptr, ref_state.ptr, atol=1e-4, rtol=0)
