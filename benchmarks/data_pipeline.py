"""Training input throughput: grain (``sam2_jax.training.data.batch_iterator``) against the thread-pool prefetcher it
replaced, in the same run, on the same batches.

Both make ``data.make_batch(source, config, step)`` for consecutive steps (the same pure function of the data seed
and the step), so the figure is the pipeline's overhead and parallelism, not the clips. Runs interleave: prefetcher,
grain threads, grain with worker processes, then again, and each figure is the median over its repeats of steps/s
after the first ``--warmup`` steps of a fresh iterator.

    .venv/bin/python benchmarks/data_pipeline.py                     # train_synthetic_tiny, 2 threads
    .venv/bin/python benchmarks/data_pipeline.py --steps 100 --image-size 256
"""

import argparse
import collections
import concurrent.futures
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import cpu_summary, environment_summary  # noqa: E402
from sam2_jax.configs.train_synthetic_tiny import get_config  # noqa: E402
from sam2_jax.training import data  # noqa: E402


def thread_pool_batches(source, config, start_step: int, prefetch: int, workers: int):
    """The prefetcher ``data.batches`` was before grain (commit 4fa7a37): a pool of threads, a window of futures."""
    window = max(prefetch, workers, 1)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    pending: collections.deque = collections.deque()
    next_step = start_step
    try:
        while True:
            while len(pending) < window:
                pending.append((next_step, pool.submit(data.make_batch, source, config, next_step)))
                next_step += 1
            step, future = pending.popleft()
            yield step, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def steps_per_second(it, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps / (time.perf_counter() - start)
    it.close()
    return rate


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="threads (the config's train.data.workers is 2)")
    p.add_argument("--processes", type=int, default=2, help="grain worker processes for the third row")
    p.add_argument("--image-size", type=int, default=None, help="default: the config's (64)")
    args = p.parse_args(argv)
    config = get_config()
    if args.image_size:
        config.model.image_size = args.image_size
    source = data.synthetic_source(config)
    prefetch = config.train.data.prefetch
    runs = {
        "thread-pool prefetcher (before)": lambda: thread_pool_batches(source, config, 0, prefetch, args.workers),
        f"grain, {args.workers} threads": lambda: data.batch_iterator(source, config, workers=args.workers),
        f"grain, {args.processes} processes x 1 thread": lambda: data.batch_iterator(
            source, config, workers=1, processes=args.processes
        ),
    }
    rates = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, make in runs.items():
            rates[name].append(steps_per_second(make(), args.steps, args.warmup))
    t = config.train
    print(f"# {cpu_summary()}")
    print(f"# {environment_summary()}")
    print(
        f"# train_synthetic_tiny: {t.batch_size} clips x {t.num_frames} frames at {config.model.image_size} px, "
        f"{args.steps} steps after {args.warmup}, median of {args.repeats} interleaved repeats"
    )
    base = statistics.median(rates["thread-pool prefetcher (before)"])
    print("| pipeline | steps/s (median) | range | vs before |")
    print("| --- | --- | --- | --- |")
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"| {name} | {m:.1f} | {min(r):.1f}-{max(r):.1f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
