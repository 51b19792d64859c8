"""The package works installed (``pip install .``, not editable) and run from another directory: the model configs
ship inside it and nothing reads the repository root.

The install is ``pip install --no-deps --target`` of a copy of the sources (no download: the dependencies are this
venv's), used through ``PYTHONPATH`` by a Python started elsewhere; the child checks that the repository is not on
``sys.path`` and that every module comes from the installed copy.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.reference import REPO

SOURCES = ["pyproject.toml", "README.md", "sam2_jax"]

# Run in the child: prove where the packages come from, then resolve every official config name.
CHILD = """
import json, os, sys
import jax
repo, target = sys.argv[1], sys.argv[2]
assert all(os.path.abspath(p or os.getcwd()) != repo for p in sys.path), sys.path
import sam2_jax
from sam2_jax import configs, convert_weights
import sam2_jax.checkpoints, sam2_jax.cli, sam2_jax.demo, sam2_jax.convert_weights.__main__
from sam2_jax import build_sam2
from sam2_jax.build_sam import resolve_config
mods = (configs, convert_weights, sam2_jax, sam2_jax.checkpoints, sam2_jax.cli)
assert all(m.__file__.startswith(target + os.sep) for m in mods), [m.__file__ for m in mods]
import sam2_jax.serve.app
assert all((sam2_jax.serve.app.STATIC / f).is_file() for f in ("index.html", "app.js", "app.css"))
names = {n: n for n in configs.NAMES}
names.update(configs.ALIASES)
for n in configs.NAMES:
    v = n.split("_")[0]
    names[f"configs/{v}/{n}.yaml"] = n  # the official build_sam2's config names
    names[f"{n}.yaml"] = n
    names[f"configs/{n}.py"] = n  # a path as the README spelled it before the configs moved into the package
    names[f"sam2_jax/configs/{n}.py"] = n  # the README's path, run from another directory
resolved = {k: resolve_config(k).name for k in names}
assert resolved == names, {k: v for k, v in resolved.items() if names[k] != v}
out = {"resolved": len(resolved)}
if len(sys.argv) > 3:
    model = build_sam2(sys.argv[3], None)
    out["params"] = len(jax.tree.leaves(model.params))
    out["image_size"] = model.image_size
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --no-deps .`` of a copy of the sources (a build in the checkout would leave build/ there)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    target = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    r = subprocess.run(pip + ["--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # our one top-level name: nothing generic (configs, convert_weights) beside it to collide with another project's
    packages = {p.name for p in target.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"sam2_jax"}, packages
    assert (target / "sam2_jax" / "configs" / "sam2.1_hiera_b+.py").is_file() and not (target / "tests").exists()
    return target


def run_installed(target, cwd, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO.resolve()), str(target), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_installed_package_resolves_every_config_from_elsewhere(installed, tmp_path):
    assert run_installed(installed, tmp_path) == {"resolved": 8 * 6}
    # The console script of the install runs from there too.
    env = dict(os.environ, PYTHONPATH=str(installed))
    r = subprocess.run(
        [sys.executable, str(installed / "bin" / "sam2-jax"), "convert", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0 and "sha256" in r.stdout, r.stderr
    # the converter's console script and module run from there as well
    for cmd in ([str(installed / "bin" / "sam2-jax-convert")], ["-m", "sam2_jax.convert_weights"]):
        r = subprocess.run(
            [sys.executable, *cmd, "--help"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )
        assert r.returncode == 0 and "--checkpoint" in r.stdout, (cmd, r.stderr)


@pytest.mark.parametrize("name", ["sam2.1_hiera_t", pytest.param("sam2.1_hiera_b+", marks=pytest.mark.slow)])
def test_installed_package_builds_a_model_from_elsewhere(name, installed, tmp_path):
    """``build_sam2(name, None)``: random init of the whole model from the installed configs."""

    from sam2_jax.checkpoints import param_shapes
    from sam2_jax.configs import get_config
    from sam2_jax.modeling.sam2_model import make_module

    got = run_installed(installed, tmp_path, name, timeout=600)
    assert got["image_size"] == 1024

    module = make_module(get_config(name).model)
    assert got["params"] == len(param_shapes(module))
