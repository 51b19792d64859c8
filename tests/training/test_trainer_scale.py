"""``train.py`` at scale, run as a user runs it (subprocesses on ``tests/training/tiny_train_config.py``):
- the same losses and final params on 1 device and on 8 forced host devices (``data=8`` and ``data=4, fsdp=2``);
- a run killed with SIGKILL after a checkpoint resumes, from the grain data iterator's checkpointed state, and logs
  the losses of an uninterrupted run;
- two processes (``jax.distributed`` on localhost, each making only its clips) match one process with 2 devices.

The device count is fixed when JAX starts, hence the subprocesses. A persistent compilation cache shared by the
runs of this module keeps the repeated compiles of the same update short.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "tests/training/tiny_train_config.py"
# Across meshes the reductions (gradient sums, norms) are split differently, so float32 rounding differs; the
# per-step losses stay this close over the 6 steps, the final params closer still relative to their size.
LOSS_RTOL = 1e-5
PARAM_ATOL = 1e-5


def _command(workdir: Path, *flags: str) -> list[str]:
    return [sys.executable, "train.py", f"--config={CONFIG}", f"--workdir={workdir}", *flags]


def _env(cache: Path, devices: int = 1) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _train(workdir: Path, cache: Path, *flags: str, devices: int = 1) -> None:
    out = subprocess.run(_command(workdir, *flags), cwd=ROOT, env=_env(cache, devices), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]


def _losses(workdir: Path, skip_lines: int = 0) -> dict[int, float]:
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f][skip_lines:]
    return {r["step"]: r["core_loss"] for r in rows if "core_loss" in r}


def _params(workdir: Path) -> dict:
    from sam2_jax.convert_weights.convert import flatten
    from sam2_jax.convert_weights.orbax_io import restore_params

    return flatten(restore_params(workdir / "export" / "params"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache) -> Path:
    """An uninterrupted run on one device."""
    workdir = tmp_path_factory.mktemp("reference")
    _train(workdir, cache)
    return workdir


def _assert_same_run(workdir: Path, ref: Path) -> dict[str, float]:
    ours, theirs = _losses(workdir), _losses(ref)
    assert sorted(ours) == sorted(theirs) == [1, 2, 3, 4, 5, 6]
    loss_err = max(abs(ours[s] - theirs[s]) / abs(theirs[s]) for s in ours)
    p, q = _params(workdir), _params(ref)
    param_err = max(float(np.abs(p[k] - q[k]).max()) for k in q)
    print(f"{workdir.name}: max relative loss difference {loss_err:.2e}, max param difference {param_err:.2e}")
    assert loss_err <= LOSS_RTOL and param_err <= PARAM_ATOL
    return {"loss": loss_err, "param": param_err}


@pytest.mark.slow  # three compiles of the update (about 1.5 min each on two busy cores)
@pytest.mark.parametrize("mesh", [(8, 1), (4, 2)], ids=["data8", "data4_fsdp2"])
def test_eight_host_devices_give_the_one_device_run(tmp_path, cache, reference, mesh):
    data, fsdp = mesh
    _train(tmp_path, cache, f"--config.train.mesh.data={data}", f"--config.train.mesh.fsdp={fsdp}", devices=8)
    _assert_same_run(tmp_path, reference)
    assert len({round(v, 4) for v in _losses(reference).values()}) == 6  # the steps differ (not a constant)


@pytest.mark.slow  # two runs, the second from the compilation cache
def test_killed_run_resumes_with_the_losses_of_an_uninterrupted_run(tmp_path, cache, reference):
    ckpts = tmp_path / "checkpoints"
    proc = subprocess.Popen(
        _command(tmp_path), cwd=ROOT, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # A step directory appears only when its asynchronous save is finalised (renamed from a temporary one).
        deadline = time.monotonic() + 600
        while not (ckpts / "2").is_dir():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (tmp_path / "export").exists(), "the run finished before it was killed"
    done = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    # grain's iterator state went into the checkpoint (one file per process): the resumed run restores it
    saved = json.loads((ckpts / str(done[-1]) / "data_iter" / "process_0-of-1.json").read_text())
    assert saved["next_index"] == done[-1], saved
    # What a kill in the middle of the next asynchronous save leaves behind: a temporary directory, half written.
    partial = ckpts / f"{done[-1] + 2}.orbax-checkpoint-tmp"
    (partial / "state").mkdir(parents=True, exist_ok=True)
    (partial / "state" / "garbage").write_bytes(b"\0" * 10)
    with open(tmp_path / "metrics.jsonl") as f:
        n_before = len(f.readlines())

    _train(tmp_path, cache)
    resumed = _losses(tmp_path, skip_lines=n_before)
    print(f"killed after step {n_before} (checkpoints {done}); resumed at step {done[-1] + 1}")
    full = _losses(reference)
    assert sorted(resumed) == list(range(done[-1] + 1, 7))
    assert not partial.exists()
    for s in resumed:  # the same program on the same restored arrays and batches: bit for bit
        assert resumed[s] == full[s], (s, resumed[s], full[s])
    p, q = _params(tmp_path), _params(reference)
    assert all(np.array_equal(p[k], q[k]) for k in q)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a 2-device and a 2-process run
def test_two_processes_give_the_two_device_run(tmp_path, cache):
    two_devices = tmp_path / "two_devices"
    _train(two_devices, cache, "--config.train.mesh.data=2", devices=2)
    multi = tmp_path / "two_processes"
    port = _free_port()
    procs, logs = [], [tmp_path / f"process{i}.log" for i in range(2)]
    for i in range(2):
        flags = [
            f"--config.train.distributed.coordinator_address=127.0.0.1:{port}",
            "--config.train.distributed.num_processes=2",
            f"--config.train.distributed.process_id={i}",
        ]
        # Logs to files, not pipes: a pipe nobody reads yet fills up and blocks its process (which then misses
        # the coordination service's shutdown barrier).
        with open(logs[i], "w") as log:
            procs.append(subprocess.Popen(_command(multi, *flags), cwd=ROOT, env=_env(cache), stdout=log, stderr=log))
    for p, log in zip(procs, logs, strict=True):
        assert p.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert _losses(multi) == _losses(two_devices)  # process 0 alone writes the metrics
    p, q = _params(multi), _params(two_devices)
    assert all(np.array_equal(p[k], q[k]) for k in q)
    assert sorted(int(p.name) for p in (multi / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 6]
