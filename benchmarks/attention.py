"""The CPU attention paths of ``sam2_jax/modeling/backend.py`` on the model's shapes, against the same run's matmul
peak: ``"fused"`` (online softmax, the CPU default) and ``"chunked"`` (the query-blocked path before it).

Shapes (tiny at 1024 px): the memory attention's cross-attention (4096 queries, one head of 256, to 7 memory frames
of 4096 tokens and 64 pointer tokens, one frame slot masked) for 1 and 3 objects, its self-attention, and Hiera's
stage-3 global block (4 heads of 96 over 4096 tokens). GFLOP/s count the two matmuls (4 * Nq * Nk * d per head);
the peak is a jitted float32 2048^2 matmul, timed between the attention runs. Both wall time (the figure) and CPU
time per core (less sensitive to other load) are printed; implementations alternate run by run.

    .venv/bin/python benchmarks/attention.py                 # this CPU's own ISA
    .venv/bin/python benchmarks/attention.py --isa avx2      # XLA limited to AVX2, as on an AVX2 CPU
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (before JAX: --isa re-execs the process)

SHAPES = {
    "memory cross-attention, 1 object": (1, 1, 4096, 7 * 4096 + 64, 256),
    "memory cross-attention, 3 objects": (3, 1, 4096, 7 * 4096 + 64, 256),
    "memory self-attention, 1 object": (1, 1, 4096, 4096, 256),
    "Hiera stage-3 global block": (1, 4, 4096, 4096, 96),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", choices=("native", "avx2"), default="native")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--impls", default="fused,chunked")
    args = p.parse_args(argv)
    common.reexec_with_isa(sys.argv if argv is None else [sys.argv[0], *argv])

    import jax
    import jax.numpy as jnp
    import numpy as np

    from sam2_jax.modeling import backend

    print(f"# {common.cpu_summary()}\n# {common.environment_summary()}\n# {common.isa_status()}")
    print(f"# {common.load_status()}; float32, {args.repeats} repeats, medians")
    impls = args.impls.split(",")
    square = common.MATMUL_SHAPES["square 2048^2"]
    print("| shape | implementation | s (wall) | GFLOP/s | of peak | of peak, CPU time | max abs vs chunked |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (B, h, nq, nk, d) in SHAPES.items():
        rng = np.random.default_rng(0)
        q, k, v = (jnp.asarray(rng.standard_normal((B, h, n, d), np.float32)) for n in (nq, nk, nk))
        mask = None
        if nk > nq:  # a masked memory slot and masked pointer tokens, as a tracked frame has
            m = np.ones((B, nk), bool)
            m[:, 4096:8192] = False
            m[:, -32:] = False
            mask = jnp.asarray(m)
        chunks = backend.GLOBAL_BLOCK_CHUNKS if nq == nk else None
        fns = {
            impl: jax.jit(
                lambda q, k, v, m, impl=impl, chunks=chunks: backend.dot_product_attention(
                    q, k, v, impl=impl, key_mask=m, query_chunks=chunks
                )
            )
            for impl in impls
        }
        outs = {impl: common.block(f(q, k, v, mask)) for impl, f in fns.items()}
        ref = outs.get("chunked")
        wall = {impl: [] for impl in impls}
        cpu = {impl: [] for impl in impls}
        peaks, peaks_cpu = [], []
        a = jnp.ones(square[:2], jnp.float32)
        mm = jax.jit(lambda a: a @ a)
        common.block(mm(a))
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            common.block(mm(a))
            peaks.append(2 * square[0] ** 3 / (time.perf_counter() - t) / 1e9)
            peaks_cpu.append(2 * square[0] ** 3 / ((time.process_time() - c) / os.cpu_count()) / 1e9)
            for impl, f in fns.items():
                t, c = time.perf_counter(), time.process_time()
                common.block(f(q, k, v, mask))
                wall[impl].append(time.perf_counter() - t)
                cpu[impl].append((time.process_time() - c) / os.cpu_count())
        flops = 4.0 * B * h * nq * nk * d
        peak, peak_cpu = statistics.median(peaks), statistics.median(peaks_cpu)
        for impl in impls:
            w, c = statistics.median(wall[impl]), statistics.median(cpu[impl])
            err = "-" if ref is None else f"{float(jnp.nanmax(jnp.abs(outs[impl] - ref))):.1e}"
            print(
                f"| {name} | {impl} | {w:.3f} | {flops / w / 1e9:.0f} | {flops / w / 1e9 / peak:.2f} | "
                f"{flops / c / 1e9 / peak_cpu:.2f} | {err} |"
            )
        print(f"| (same run: float32 2048^2 matmul {peak:.0f} GFLOP/s) | | | | | | |")


if __name__ == "__main__":
    main()
