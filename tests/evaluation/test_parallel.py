"""Videos spread over device groups (``parallel``) with stand-in predictors: the results and files equal a one-worker
run's whatever the completion order, the workers really run at the same time, each on one video at a time; and, on
four forced host devices, each worker's arrays are made on its group's device. The real model on four devices is in
tests/test_eval.py (slow)."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from sam2_jax.datasets import vos
from sam2_jax.datasets.synthetic import SyntheticVideoDataset
from sam2_jax.evaluation import interactive, parallel, vos_eval
from tests.evaluation.test_interactive import HorizonTracker
from tests.evaluation.test_vos_eval import EchoPredictor


class Log:
    """What each worker ran, when, and in which thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs = []  # (video, worker, thread, start, end)

    def record(self, video, worker, start):
        with self.lock:
            self.runs.append((video, worker, threading.get_ident(), start, time.perf_counter()))

    def max_overlap(self) -> int:
        events = sorted([(r[3], 1) for r in self.runs] + [(r[4], -1) for r in self.runs], key=lambda e: (e[0], e[1]))
        level = best = 0
        for _, d in events:
            level += d
            best = max(best, level)
        return best


class AnyVideoEcho(EchoPredictor):
    """``EchoPredictor`` for whichever video it is given (found by its frames), sleeping ``delay[video]`` seconds in
    ``init_state`` (so later videos can finish first) and raising ``ValueError`` for the videos in ``bad``."""

    def __init__(self, name, videos, log, delay, bad=()):
        super().__init__(videos[0])
        self.name, self.by_frames, self.log, self.delay, self.bad = (
            name,
            {id(v.frames): v for v in videos},
            log,
            delay,
            bad,
        )

    def init_state(self, frames):
        start = time.perf_counter()
        self.video = self.by_frames[id(frames)]
        time.sleep(self.delay[self.video.video_id])
        self.log.record(self.video.video_id, self.name, start)
        if self.video.video_id in self.bad:
            raise ValueError(f"video {self.video.video_id} is unreadable")
        return super().init_state(frames)


def _videos(n):
    out = []
    for v in SyntheticVideoDataset(n, seed=11, num_frames=7, height=30, width=36, num_objects=2):
        out.append(vos.vos_video_from_arrays(v.video_id, v.frames, v.masks, v.object_ids, annotation_stride=2))
    return out


def _files(root):
    return {
        os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
        for d, _, fs in os.walk(root)
        for f in fs
    }


def test_device_groups():
    devs = list("abcdefgh")
    assert parallel.device_groups(0, 20, devs) == [(d,) for d in devs]  # more videos than devices: one each
    assert parallel.device_groups(0, None, devs) == [(d,) for d in devs]
    assert parallel.device_groups(0, 3, devs) == [("a", "b"), ("c", "d"), ("e", "f"), ("g", "h")]
    assert parallel.device_groups(0, 1, devs) == [tuple(devs)]
    assert parallel.device_groups(3, 20, devs) == [("a", "b", "c"), ("d", "e", "f")]  # g, h idle
    for bad in (-1, 9):
        with pytest.raises(ValueError, match=f"devices_per_video {bad} must be 0"):
            parallel.device_groups(bad, 20, devs)


def test_vos_over_three_workers_equals_one_worker(tmp_path):
    videos = _videos(7)
    # Video 0 is slowest, so the later ones finish first on the other workers; 1 and 2 last long enough that all
    # three workers are busy at once, even on a loaded machine.
    delay = {v.video_id: 1.5 if i == 0 else 0.3 if i < 3 else 0.02 for i, v in enumerate(videos)}
    bad = {videos[4].video_id}
    results, logs = {}, {}
    for n in (1, 3):
        logs[n] = Log()
        workers = [AnyVideoEcho(f"w{i}", videos, logs[n], delay, bad) for i in range(n)]
        for p in workers:
            p.lose = {int(videos[0].object_ids[0]): {2, 4}}  # a few wrong frames, so scores are not all 1
        cfg = vos_eval.VOSEvalConfig(output_dir=str(tmp_path / f"w{n}"))
        results[n] = vos_eval.evaluate_vos(workers if n > 1 else workers[0], videos, cfg, progress=False)
    one, three = results[1], results[3]
    assert [(s.video, s.object_id, s.frames, s.j.tolist(), s.f.tolist()) for s in three.scores] == [
        (s.video, s.object_id, s.frames, s.j.tolist(), s.f.tolist()) for s in one.scores
    ]
    assert three.summary == one.summary and three.num_frames == one.num_frames > 0
    assert three.skipped == one.skipped == [(videos[4].video_id, f"video {videos[4].video_id} is unreadable")]
    assert list(dict.fromkeys(s.video for s in one.scores)) == [v.video_id for v in videos if v.video_id not in bad]
    # Every file (CSVs, PNGs, the per-frame plot) byte for byte.
    a, b = _files(tmp_path / "w1"), _files(tmp_path / "w3")
    assert sorted(a) == sorted(b) and len(a) > 20
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    # The three workers ran at once, each on one video at a time in one thread, and later videos finished first.
    runs = logs[3].runs
    assert logs[1].max_overlap() == 1 and logs[3].max_overlap() == 3
    assert {r[1] for r in runs} == {"w0", "w1", "w2"} and len({r[2] for r in runs}) == 3
    for w in ("w0", "w1", "w2"):
        mine = sorted((r[3], r[4]) for r in runs if r[1] == w)
        assert all(e0 <= s1 for (_, e0), (s1, _) in zip(mine, mine[1:], strict=False))
    assert [r[0] for r in runs] != [v.video_id for v in videos]


class AnyVideoHorizon(HorizonTracker):
    """``HorizonTracker`` for whichever video it is given, sleeping ``delay`` seconds when it starts one."""

    def __init__(self, videos, delay):
        super().__init__(videos[0])
        self.by_frames, self.delay = {id(v.frames): v for v in videos}, delay

    def init_state(self, frames):
        self.video = self.by_frames[id(frames)]
        time.sleep(self.delay[self.video.video_id])
        return super().init_state(frames)


def test_interactive_over_two_workers_equals_one_worker():
    # Videos of different lengths give different curves; the first is slow, so the second finishes first.
    videos = []
    for i, t in enumerate((12, 7, 9)):
        masks = np.zeros((t, 1, 24, 32), bool)
        for k in range(t):
            masks[k, 0, 4:14, 2 + 2 * k : 12 + 2 * k] = True
        videos.append(vos.vos_video_from_arrays(f"v{i}", np.zeros((t, 24, 32, 3), np.uint8), masks, [1]))
    delay = {"v0": 0.2, "v1": 0.0, "v2": 0.0}
    cfg = interactive.InteractiveConfig(mode="online", max_frames=3)
    one = interactive.evaluate_interactive(AnyVideoHorizon(videos, delay), videos, cfg, progress=False)
    two = interactive.evaluate_interactive([AnyVideoHorizon(videos, delay) for _ in range(2)], videos, cfg, False)
    assert [o.video for o in two.objects] == ["v0", "v1", "v2"]
    for a, b in zip(one.objects, two.objects, strict=True):
        assert a.video == b.video and a.j.tolist() == b.j.tolist() and a.f.tolist() == b.f.tolist()
    assert one.jf.tolist() == two.jf.tolist() and len(set(tuple(o.j) for o in one.objects)) == 3


def test_a_failure_stops_the_run():
    started = []

    def fn(worker, video):
        started.append(video)
        if video == 2:
            raise RuntimeError("boom on 2")
        time.sleep(0.05)
        return video

    with pytest.raises(RuntimeError, match="boom on 2"):
        parallel.map_videos(fn, range(40), ["a", "b"], progress=False)
    assert len(started) < 40  # the rest of the dataset was not started
    assert parallel.map_videos(lambda w, v: v * 10, range(5), ["a", "b"], progress=False) == [0, 10, 20, 30, 40]


_FOUR_DEVICES = r"""
import threading, time
import jax, jax.numpy as jnp, numpy as np
from sam2_jax.evaluation import parallel

assert jax.device_count() == 4
groups = parallel.device_groups(0, 10)
assert groups == [(d,) for d in jax.devices()], groups
assert parallel.device_groups(0, 2) == [tuple(jax.devices()[:2]), tuple(jax.devices()[2:])]

class Worker:
    def __init__(self, group):
        self.mesh = jax.sharding.Mesh(np.array(group), ("obj",))

seen = {}
def fn(w, video):
    x = jnp.asarray(np.full(8, video, np.float32))  # made on the worker's device, as the predictor's inputs are
    y = jax.jit(lambda a: a * 2)(x)
    time.sleep(0.1)
    seen[video] = (w.mesh.devices.flat[0].id, [d.id for d in x.devices()], [d.id for d in y.devices()])
    return float(y[0])

assert parallel.map_videos(fn, range(8), [Worker(g) for g in groups], progress=False) == [2.0 * v for v in range(8)]
assert all(s[1] == s[2] == [s[0]] for s in seen.values()), seen
assert sorted({s[0] for s in seen.values()}) == [0, 1, 2, 3], seen
print("OK")
"""


def test_workers_make_their_arrays_on_their_devices():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", _FOUR_DEVICES], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]
