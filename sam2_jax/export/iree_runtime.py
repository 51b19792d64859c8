"""Run an exported function with IREE: a compiler and runtime that are not JAX read the artifact.

``sam2-jax export --static-dims b=1,n=1,o=2,k=2 --platforms cpu`` writes, beside each function's symbolic
``.mlirbc``, ``<name>.static.mlirbc``: the same function lowered with those sizes. IREE's StableHLO input takes
that file as it is (``iree-compile --iree-input-type=stablehlo``); the symbolic one it refuses
(``stablehlo.dynamic_broadcast_in_dim`` is not legalized). This module compiles it for a target (``llvm-cpu``
here; IREE's ``cuda``, ``vulkan-spirv`` and ``metal-spirv`` take the same file) and calls it with numpy arrays:
the params from ``params.npz`` in the manifest's ``params_order``, then the inputs' leaves, keeping the arguments
the module kept (``kept_arguments``). Nothing here imports JAX.

    fn = IreeFunction("export/tiny", "image_encoder")      # compiles once, cached as image_encoder.llvm-cpu.vmfb
    feats = fn(images)                                     # numpy in, numpy out (the outputs' leaves, in order)

What stays out: the tracking step with hole filling (``fill_hole_area > 0``, the official default 8) does not
compile: IREE 3.13 rejects the nested ``lax.while_loop`` of the hole filling's connected components
(``sam2_jax/utils/misc.py``: "'scf.while' op along control flow edge ... region branch point has 2 operands, but
region successor needs 4 inputs"). Exported with ``fill_hole_area=0`` it compiles and runs.
"""

import json
import os
from typing import Any

import numpy as np

from sam2_jax.export import names


def leaves(tree: Any) -> list[np.ndarray]:
    """A pytree's leaves in JAX's order (dicts by sorted key, tuples and lists in order), without JAX."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in leaves(tree[k])]
    if isinstance(tree, list | tuple):
        return [x for t in tree for x in leaves(t)]
    return [np.asarray(tree)]


class IreeFunction:
    """One exported function, compiled by IREE from its ``.static.mlirbc`` and run by IREE's runtime."""

    def __init__(self, folder: str, name: str, target: str = "llvm-cpu", device: str = "local-task") -> None:
        import iree.compiler
        import iree.runtime

        with open(os.path.join(folder, names.MANIFEST)) as f:
            manifest = json.load(f)
        entry = manifest["functions"][name]
        static = entry.get("stablehlo_static")
        if static is None:
            raise ValueError(f"{folder}: {name} has no static StableHLO: export it with --static-dims")
        if len(manifest["platforms"]) != 1:
            raise ValueError(f"{folder}: exported for {manifest['platforms']}; IREE needs a one-platform export")
        self.name, self.dims = name, static["dims"]
        vmfb = os.path.join(folder, f"{name}.{target}.vmfb")
        if not os.path.isfile(vmfb):
            extra = ["--iree-llvmcpu-target-cpu=host"] if target == "llvm-cpu" else []
            binary = iree.compiler.compile_file(
                os.path.join(folder, static["file"]),
                target_backends=[target],
                input_type="stablehlo",
                extra_args=extra,
            )
            with open(vmfb, "wb") as f:
                f.write(binary)
        params = np.load(os.path.join(folder, manifest["params"]["file"]))
        self._params = [params[k] for k in manifest["params_order"]]
        self._kept = static["kept_arguments"]
        self._context = iree.runtime.SystemContext(config=iree.runtime.Config(device))
        with open(vmfb, "rb") as f:
            module = iree.runtime.VmModule.copy_buffer(self._context.instance, f.read())
        self._context.add_vm_module(module)
        self._main = self._context.modules[module.name]["main"]

    def __call__(self, *inputs) -> list[np.ndarray]:
        """The function on ``inputs`` (as the manifest's ``inputs``: arrays or dicts of arrays); its outputs'
        leaves as numpy arrays."""
        flat = self._params + leaves(list(inputs))
        out = self._main(*[np.require(flat[i], requirements="C") for i in self._kept])
        out = out if isinstance(out, list | tuple) else [out]
        return [np.asarray(o.to_host()) if hasattr(o, "to_host") else np.asarray(o) for o in out]
