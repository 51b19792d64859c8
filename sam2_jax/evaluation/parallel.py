"""Spreading a dataset's videos over the local devices (``eval.py``'s ``vos`` and ``interactive`` tasks).

What is spread, and how:

- The local devices are split into groups of ``devices_per_video`` (``device_groups``; by default one device per
  group when there are at least as many videos as devices, else ``devices // videos`` per group; devices left over
  stay idle). Each group gets its own ``SAM2VideoPredictor`` (``group_predictors``): the params replicated on the
  group's devices (one copy per group in device memory) and a one-axis ``Mesh`` over them, so within a video the
  object batch is still sharded over the group's devices when the object count divides the group size.
- ``map_videos`` hands each idle group the next video: one host thread per group, at most one video in flight per
  group (the dataset is read in the calling thread, so at most that many videos are held). Inside its thread a
  group's arrays are made on its first device (``jax.default_device``). JAX releases the GIL while device work
  runs, so the groups' device work overlaps with each other and with the host work of the others (frame decoding,
  click simulation, PNG writing, scoring).
- Each group compiles the model for its own devices (an XLA executable is bound to its devices): the first videos
  compile once per group, concurrently; the persistent compilation cache (``--compilation_cache``) keeps one entry
  per device, so a later run loads them.
- The outputs do not depend on the scheduling: every video runs the same computations whichever group takes it,
  writes its PNGs to its own folder, and the callers assemble the per-video results (scores, skipped videos, frame
  counts) in the dataset's order before writing CSVs and plots, so they equal a one-group run's, byte for byte
  (``tests/test_eval.py``, four forced host devices).

One group spanning all devices is the one-after-another run (``--devices_per_video`` = the device count): the same
as a single predictor whose object batch is sharded over every device.
"""

import contextlib
import dataclasses
import queue
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import jax
import numpy as np


def device_groups(
    devices_per_video: int = 0, num_videos: int | None = None, devices: Sequence[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Splits the devices into groups that each run one video at a time.

    Args:
      devices_per_video: devices per group; 0 picks ``max(1, len(devices) // num_videos)`` (1 when the number of
        videos is unknown or at least the number of devices).
      num_videos: the dataset's size, if known.
      devices: the devices to split (default ``jax.local_devices()``).

    Returns:
      ``len(devices) // devices_per_video`` groups of consecutive devices.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    if not 0 <= devices_per_video <= n:
        raise ValueError(f"devices_per_video {devices_per_video} must be 0 (auto) or 1..{n}, the local device count")
    k = devices_per_video or (max(1, n // num_videos) if num_videos else 1)
    return [tuple(devices[i * k : (i + 1) * k]) for i in range(n // k)]


def group_predictors(model, groups: Sequence[Sequence[Any]], **predictor_kwargs) -> list:
    """One ``SAM2VideoPredictor`` per device group, its params replicated and its object axis sharded there.

    Args:
      model: the ``SAM2Model``.
      groups: from ``device_groups``.
      **predictor_kwargs: passed to every ``SAM2VideoPredictor``.

    Returns:
      the predictors, in the order of ``groups``.
    """
    from sam2_jax.sam2_video_predictor import SAM2VideoPredictor

    if len(groups) == 1 and len(groups[0]) == len(jax.devices()):
        return [SAM2VideoPredictor(model, **predictor_kwargs)]  # the predictor's own default: every device
    out = []
    for group in groups:
        mesh = jax.sharding.Mesh(np.array(group), ("obj",))
        # Committed to the group, so every computation taking them runs there whatever thread calls it.
        params = jax.device_put(model.params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        out.append(SAM2VideoPredictor(dataclasses.replace(model, params=params), mesh=mesh, **predictor_kwargs))
    return out


def _on_devices(worker):
    mesh = getattr(worker, "mesh", None)
    return contextlib.nullcontext() if mesh is None else jax.default_device(mesh.devices.flat[0])


def map_videos(fn: Callable[[Any, Any], Any], videos: Iterable, workers: Any, progress: bool = True) -> list:
    """``[fn(worker, video) for video in videos]``, each idle worker taking the next video (module docstring).

    Args:
      fn: runs one video on a worker; it must not share mutable state with other calls (each worker is used by one
        thread at a time). An exception it raises stops the run and is raised here.
      videos: the dataset (read in the calling thread, one video ahead of each busy worker at most).
      workers: one per device group (``group_predictors``), or stand-ins without a ``mesh``; a single worker (not
        a list or tuple) runs every video.
      progress: a progress bar over videos.

    Returns:
      the results in the order of ``videos``, whichever worker ran each.
    """
    from tqdm import tqdm

    workers = list(workers) if isinstance(workers, list | tuple) else [workers]
    total = len(videos) if hasattr(videos, "__len__") else None
    bar = tqdm(total=total, disable=not progress, desc="videos", unit="video")
    if len(workers) == 1:
        out = []
        for video in videos:
            with _on_devices(workers[0]):
                out.append(fn(workers[0], video))
            bar.update()
        bar.close()
        return out
    idle: queue.SimpleQueue = queue.SimpleQueue()
    for w in workers:
        idle.put(w)

    def task(video):
        # A task is only submitted while fewer tasks than workers are running, and a worker goes back to the queue
        # before its task's future completes, so this never waits.
        w = idle.get()
        try:
            with _on_devices(w):
                return fn(w, video)
        finally:
            idle.put(w)

    futures: list[Future] = []
    running: set[Future] = set()

    def settle(done):
        for f in done:
            f.result()  # raise a failure now, not after the whole dataset
            bar.update()

    with ThreadPoolExecutor(len(workers), thread_name_prefix="video") as pool:
        try:
            for video in videos:
                if len(running) >= len(workers):
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    settle(done)
                futures.append(pool.submit(task, video))
                running.add(futures[-1])
            settle(wait(running).done)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    bar.close()
    return [f.result() for f in futures]
