"""Shared helpers of the benchmark scripts: median timers, matmul peaks, the malloc re-exec, result tables.

The scripts time our JAX code and the official PyTorch code in the same process, on the same weights and
inputs, interleaving the implementations run by run (``time_interleaved``), because single figures from this
shared 2-core machine drift with the load of other processes. Import this module before JAX when using
``reexec_with_malloc``: the malloc setting only acts on a fresh process.
"""

import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]

# glibc malloc keeps freed memory instead of mapping fresh pages for every large XLA temporary (see
# ../shared/REFERENCE.md, "The malloc setting"); it must be in the environment before the process starts.
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.arena_max=1"


def reexec_with_malloc(argv: Sequence[str] | None = None, flag: str = "--malloc") -> None:
    """If ``flag`` is in ``argv`` and the malloc setting is not on yet, restart this script with it (execve).

    Call this first thing in ``main`` (before JAX allocates anything); it returns only when no restart is needed.
    """
    argv = list(sys.argv if argv is None else argv)
    if flag not in argv or malloc_setting_active():
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
    print(f"[{flag}] re-executing with GLIBC_TUNABLES={MALLOC_TUNABLES}", flush=True)
    os.execve(sys.executable, [sys.executable, *argv], env)


# Both libraries' kernels limited to AVX2 on an AVX-512 machine, as on an AVX2 CPU: XLA's code generation, oneDNN's
# and ATen's dispatch. Read when each library starts, so set before the process starts.
ISA_ENV = {
    "avx2": {
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
    }
}


def reexec_with_isa(argv: Sequence[str] | None = None, flag: str = "--isa") -> None:
    """If ``argv`` has ``flag VALUE`` (``avx2``; ``native``: no limit) and the environment does not set it yet,
    restart this script with ``ISA_ENV[VALUE]`` (XLA_FLAGS appended to any already set). Call it before JAX or
    torch is imported."""
    argv = list(sys.argv if argv is None else argv)
    if flag not in argv:
        return
    isa = argv[argv.index(flag) + 1]
    if isa == "native" or isa_limit_active(isa):
        return
    if isa not in ISA_ENV:
        raise SystemExit(f"{flag} takes native or {', '.join(ISA_ENV)}, got {isa!r}")
    env = dict(os.environ)
    for key, value in ISA_ENV[isa].items():
        env[key] = f"{env[key]} {value}" if key == "XLA_FLAGS" and env.get(key) else value
    print(f"[{flag} {isa}] re-executing with {ISA_ENV[isa]}", flush=True)
    os.execve(sys.executable, [sys.executable, *argv], env)


def isa_limit_active(isa: str) -> bool:
    return all(v in os.environ.get(k, "") for k, v in ISA_ENV.get(isa, {}).items())


def isa_status() -> str:
    limits = [
        f"{k}={os.environ[k]}" for k in ("XLA_FLAGS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ
    ]
    return "ISA: " + (", ".join(limits) if limits else "native (no limit set)")


def malloc_setting_active() -> bool:
    return MALLOC_TUNABLES in os.environ.get("GLIBC_TUNABLES", "")


def malloc_status() -> str:
    value = os.environ.get("GLIBC_TUNABLES")
    if value is None:
        return "GLIBC_TUNABLES not set (default glibc malloc; pass --malloc to set it)"
    state = "the malloc setting is ON" if malloc_setting_active() else "NOT the recommended malloc setting"
    return f"GLIBC_TUNABLES={value} ({state})"


def block(x: Any) -> Any:
    """Waits for every JAX array in ``x`` (other leaves pass through); JAX dispatch is asynchronous."""
    import jax

    return jax.block_until_ready(x)


@dataclasses.dataclass
class Timing:
    """Seconds of the warm-up calls and of the timed repeats of one function."""

    warmup: list[float]
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def first(self) -> float:
        return self.warmup[0] if self.warmup else self.runs[0]

    @property
    def first_minus_steady(self) -> float:
        """Compile (and other one-off) time: the first call minus the steady-state median."""
        return max(self.first - self.median, 0.0)

    def spread(self) -> str:
        return f"min {min(self.runs):.3f} max {max(self.runs):.3f} n={len(self.runs)}"


def time_fn(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> Timing:
    """Times ``fn()`` (which must return only when its work is done: wrap JAX results in ``block``)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times: list[float] = []
    for _ in range(warmup + repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(warmup=times[:warmup], runs=times[warmup:])


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1) -> dict[str, Timing]:
    """Times several implementations of the same work, alternating them run by run (each warmed up first).

    On a machine shared with other jobs the load drifts over minutes; alternating puts each implementation
    under the same drift, so the ratio of the medians stays meaningful when the absolute seconds do not.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    warm: dict[str, list[float]] = {k: [] for k in fns}
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for k, fn in fns.items():
        for _ in range(warmup):
            t0 = time.perf_counter()
            fn()
            warm[k].append(time.perf_counter() - t0)
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    return {k: Timing(warmup=warm[k], runs=runs[k]) for k in fns}


def jit_compile(fn: Callable, *args, **jit_kwargs) -> tuple[Any, float, float | None]:
    """``jax.jit(fn).lower(*args).compile()`` timed; returns (compiled, seconds, XLA's flop count or None)."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
    seconds = time.perf_counter() - t0
    return compiled, seconds, compiled_flops(compiled)


def compiled_flops(compiled: Any) -> float | None:
    """FLOPs from XLA's cost analysis of a compiled executable (a dict, or a list of dicts on older JAX).

    XLA counts the body of a loop once, whatever its trip count: a ``lax.map`` / ``lax.scan`` over 16 chunks
    contributes a sixteenth of its work. ``jaxpr_flops`` multiplies by the trip count.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # cost analysis is optional per backend
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def jaxpr_flops(fn: Callable, *args) -> tuple[float, bool]:
    """Matmul + convolution FLOPs (2 per multiply-add) of ``fn(*args)``, counted on its jaxpr.

    Scan bodies count ``length`` times (unlike XLA's cost analysis); a ``while`` body counts once and sets the
    returned flag (its trip count is unknown); ``cond`` counts its costliest branch. Elementwise work (softmax,
    norms, the depthwise convs written as shifted adds) is not counted: this is the work a matmul peak bounds.
    """
    import jax

    closed = jax.make_jaxpr(fn)(*args)
    inexact = [False]

    def subjaxprs(value):
        if hasattr(value, "eqns"):
            yield value
        elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
            yield value.jaxpr
        elif isinstance(value, list | tuple):
            for v in value:
                yield from subjaxprs(v)

    def count(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name == "dot_general":
                (lhs_contract, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                k = _prod(lhs[i] for i in lhs_contract)
                total += 2.0 * _prod(eqn.outvars[0].aval.shape) * k
            elif name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape
                rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial) axes of the kernel
                per_output = rhs[rhs_spec[1]] * _prod(rhs[d] for d in rhs_spec[2:])
                total += 2.0 * _prod(eqn.outvars[0].aval.shape) * per_output
            elif name == "scan":
                total += eqn.params["length"] * count(eqn.params["jaxpr"].jaxpr)
            elif name == "cond":
                total += max(count(b.jaxpr) for b in eqn.params["branches"])
            else:
                if name == "while":
                    inexact[0] = True
                for v in eqn.params.values():
                    for sub in subjaxprs(v):
                        total += count(sub)
        return total

    return count(closed.jaxpr), inexact[0]


def _prod(xs) -> float:
    out = 1.0
    for x in xs:
        out *= x
    return out


# --- matmul peaks --------------------------------------------------------------------------------------------
MATMUL_SHAPES = {
    "square 2048^2": (2048, 2048, 2048),
    # the memory-attention score shape of REFERENCE.md: 4096 queries x 256 x 28,672 keys
    "attn 4096x256x28672": (4096, 256, 28672),
    # the tiny Hiera's stage-3 MLP at batch 1: 4096 tokens x 384 -> 1536
    "mlp 4096x384x1536": (4096, 384, 1536),
}


def jax_matmul_gflops(m: int, k: int, n: int, dtype: str = "float32", repeats: int = 5) -> float:
    """GFLOP/s of a jitted (m, k) @ (k, n) in JAX; bf16 inputs accumulate and return float32."""
    import jax
    import jax.numpy as jnp

    dt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (m, k), jnp.float32).astype(dt)
    b = jax.random.normal(kb, (k, n), jnp.float32).astype(dt)
    f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    t = time_fn(lambda: block(f(a, b)), repeats=repeats, warmup=1)
    return 2.0 * m * k * n / t.median / 1e9


def torch_matmul_gflops(m: int, k: int, n: int, dtype: str = "float32", repeats: int = 5) -> float:
    """GFLOP/s of ``torch.mm`` at the current ``torch.get_num_threads()``."""
    import torch

    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(dt)
    b = torch.randn(k, n, generator=g).to(dt)
    with torch.inference_mode():
        t = time_fn(lambda: torch.mm(a, b), repeats=repeats, warmup=1)
    return 2.0 * m * k * n / t.median / 1e9


def matmul_peaks(
    shapes: dict[str, tuple[int, int, int]] | None = None, repeats: int = 5, torch_too: bool = True
) -> dict[str, dict[str, float]]:
    """{shape name: {'jax f32', 'jax bf16->f32', 'torch f32'}: GFLOP/s}; the peak is the max over shapes."""
    shapes = MATMUL_SHAPES if shapes is None else shapes
    out: dict[str, dict[str, float]] = {}
    for name, (m, k, n) in shapes.items():
        row = {
            "jax f32": jax_matmul_gflops(m, k, n, "float32", repeats),
            "jax bf16->f32": jax_matmul_gflops(m, k, n, "bfloat16", repeats),
        }
        if torch_too:
            row["torch f32"] = torch_matmul_gflops(m, k, n, "float32", repeats)
        out[name] = row
    return out


def print_matmul_peaks(peaks: dict[str, dict[str, float]]) -> dict[str, float]:
    """Prints the per-shape GFLOP/s and returns the best of each column (the 'measured peak')."""
    cols = list(next(iter(peaks.values())))
    width = max(len(n) for n in peaks) + 2
    print(f"{'matmul GFLOP/s':<{width}}" + "".join(f"{c:>16}" for c in cols))
    for name, row in peaks.items():
        print(f"{name:<{width}}" + "".join(f"{row[c]:>16.1f}" for c in cols))
    best = {c: max(row[c] for row in peaks.values()) for c in cols}
    print(f"{'peak (max)':<{width}}" + "".join(f"{best[c]:>16.1f}" for c in cols))
    return best


# --- result table --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    """One line of an official-vs-ours table; ``official`` None for lines with no counterpart."""

    what: str
    ours: float
    official: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """official / ours: > 1 means we are faster."""
        return None if self.official is None or self.ours <= 0 else self.official / self.ours


def print_table(rows: Sequence[Row], title: str = "") -> None:
    """Prints seconds (medians), the ratio official/ours (> 1: ours is faster) and a note per line."""
    width = max([len(r.what) for r in rows] + [10]) + 2
    if title:
        print(title)
    header = f"{'what':<{width}}{'ours s':>10}{'official s':>12}{'off/ours':>10}  note"
    print(header)
    print("-" * max(len(header), 100))
    for r in rows:
        off = "-" if r.official is None else f"{r.official:.3f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        print(f"{r.what:<{width}}{r.ours:>10.3f}{off:>12}{ratio:>10}  {r.note}")


def load_status() -> str:
    """The 1-minute load average: above the core count, other processes are competing for the cores."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load average unknown"
    busy = load > 0.5 + (os.cpu_count() or 1) / 2
    return f"load average {load:.2f} on {os.cpu_count()} cores" + (
        " (OTHER PROCESSES ARE COMPETING: seconds are inflated, ratios less reliable)" if busy else ""
    )


def wait_for_quiet(max_load: float, max_wait_s: float) -> None:
    """Sleeps (up to ``max_wait_s``) until the 1-minute load average drops below ``max_load``."""
    t0 = time.perf_counter()
    while os.getloadavg()[0] > max_load and time.perf_counter() - t0 < max_wait_s:
        time.sleep(10)


def cpu_summary() -> str:
    """The CPU as a ratio's label needs it: model name, family, cores, AVX-512 and AVX512-BF16 (``/proc/cpuinfo``).

    XLA:CPU and torch pick other kernels with and without AVX-512, so a CPU figure holds for its CPU kind only.
    """
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:
                    break  # the first processor's block is enough
                fields.setdefault(key, value.strip())
    except OSError:
        return f"CPU unknown (no /proc/cpuinfo), {os.cpu_count()} cores"
    flags = set(fields.get("flags", "").split())
    yes = lambda flag: "yes" if flag in flags else "no"  # noqa: E731
    return (
        f"{fields.get('model name', 'CPU model unknown')}, CPU family {fields.get('cpu family', '?')}, "
        f"{os.cpu_count()} cores, AVX-512 {yes('avx512f')}, AVX512-BF16 {yes('avx512_bf16')}"
    )


def environment_summary() -> str:
    """Versions and thread settings, for the head of a benchmark's output."""
    import jax

    lines = [
        f"python {sys.version.split()[0]}, jax {jax.__version__}, backend {jax.default_backend()}, "
        f"devices {jax.devices()}, cpu count {os.cpu_count()}"
    ]
    try:
        import torch

        lines.append(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    except ImportError:
        lines.append("torch not installed")
    lines.append(load_status())
    lines.append(malloc_status())
    return "\n".join(lines)
