"""Compile seconds per model size, cold (empty persistent cache) and warm (a second process, same cache).

For each config: the image encoder (``calls.frame_features``, 1 image), the propagation chunk
(``compiled.propagate_chunk``, ``--chunk`` frames, ``--objects`` objects) and a prompt step (``engine.interact``, one
click on a first frame), each lowered from abstract shapes (no weights are made) and compiled. The warm numbers come
from a fresh process reading the same persistent cache: what a user's second session pays.

    .venv/bin/python benchmarks/compile.py [--models sam2.1_hiera_t,sam2.1_hiera_l] [--image-size 1024]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="sam2.1_hiera_t,sam2.1_hiera_s,sam2.1_hiera_b+,sam2.1_hiera_l")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--objects", type=int, default=1)
    p.add_argument("--chunk", type=int, default=4)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="compute dtype of the model")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def compile_seconds(model: str, image_size: int, objects: int, chunk: int, dtype: str = "float32") -> dict[str, float]:
    """Seconds to compile each entry point of ``model`` in this process (cache as configured by the caller)."""
    import jax
    import jax.numpy as jnp

    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module
    from sam2_jax.tracker import calls, compiled
    from sam2_jax.tracker.state import empty_state
    from sam2_jax.tracker.step_config import StepConfig
    from sam2_jax.utils.compile_cache import CompileCounter

    m = get_config(model).model
    m.image_size = image_size

    module = make_module(m, jnp.dtype(dtype))
    S, h = image_size, image_size // 16
    img = jax.ShapeDtypeStruct((1, S, S, 3), jnp.float32)
    params = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), img)["params"]
    consts = (m.num_maskmem, m.max_obj_ptrs_in_encoder, h * h, module.mem_dim, module.hidden_dim, (4 * h, 4 * h), 100)
    state = jax.eval_shape(lambda: empty_state(objects, 1, *consts))
    one_object = jax.eval_shape(lambda: empty_state(1, 1, *consts))
    feats = jax.eval_shape(lambda p, x: calls.frame_features(module, p, x), params, img)
    i32, b = jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.bool_)
    frames, idxs = jax.ShapeDtypeStruct((chunk, S, S, 3), jnp.float32), jax.ShapeDtypeStruct((chunk,), jnp.int32)
    click = (jax.ShapeDtypeStruct((1, 1, 2), jnp.float32), jax.ShapeDtypeStruct((1, 1), jnp.int32))
    step_cfg = StepConfig(compact=True)  # the predictor's propagation step
    entry = {
        "image encoder": (compiled.jit_frame_features.lower, (module, params, img)),
        "propagation chunk": (compiled.propagate_chunk.lower, (module, params, state, frames, idxs, b, step_cfg)),
        "prompt step": (compiled.jit_interact.lower, (module, params, one_object, feats, i32, b, *click, None, None)),
    }
    out = {}
    for name, (lower, args) in entry.items():
        kw = {"is_init_cond_frame": True} if name == "prompt step" else {}
        with CompileCounter() as c:
            t0 = time.perf_counter()
            lower(*args, **kw).compile()
            out[name] = time.perf_counter() - t0
        out[name + " cache hits"] = c.cache_hits
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        from sam2_jax.utils.compile_cache import enable_compilation_cache

        enable_compilation_cache()
        print(
            "RESULT " + json.dumps(compile_seconds(args.child, args.image_size, args.objects, args.chunk, args.dtype))
        )
        return
    cache = tempfile.mkdtemp(prefix="sam2_jax_xla_")
    env = dict(os.environ, SAM2_JAX_COMPILATION_CACHE=cache)
    print(
        f"compile seconds, {args.dtype}, {args.image_size} px, {args.objects} object(s), chunk {args.chunk}, "
        f"CPU {os.cpu_count()}"
    )
    print("| model | entry point | cold s | warm s (second process) |")
    print("| --- | --- | --- | --- |")
    for model in args.models.split(","):
        runs = []
        for _ in ("cold", "warm"):
            argv = [sys.executable, __file__, "--child", model, "--image-size", str(args.image_size)]
            argv += ["--objects", str(args.objects), "--chunk", str(args.chunk), "--dtype", args.dtype]
            p = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
            runs.append(json.loads(next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))[7:]))
        cold, warm = runs
        for name in ("image encoder", "propagation chunk", "prompt step"):
            hits = "" if warm[name + " cache hits"] else " (no cache hit)"
            print(f"| {model} | {name} | {cold[name]:.1f} | {warm[name]:.1f}{hits} |", flush=True)


if __name__ == "__main__":
    main()
