"""Hub names (``build_sam2("facebook/sam2.1-hiera-tiny")``, ``sam2-jax download --model facebook/...``) through
``huggingface_hub``'s real code path, with no network: a local folder laid out like its cache
(``models--facebook--<name>/{refs/main, snapshots/<commit>/<file>}``) and offline mode."""

import os
import subprocess
import sys

import numpy as np
import pytest

from sam2_jax import checkpoints
from sam2_jax.configs import get_config
from sam2_jax.convert_weights.convert import flatten
from sam2_jax.convert_weights.hf_format import write_hf
from sam2_jax.convert_weights.pt_format import save_pt
from tests.reference import REPO

REPO_21 = "facebook/sam2.1-hiera-tiny"
IOU_TOKEN = "sam_mask_decoder.iou_token.weight"
SAM21_ONLY = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")
REV_OLD = "1" * 40
REV_NEW = "2" * 40


def snapshot(hub: os.PathLike, repo: str, rev: str, main: bool = True):
    """The folder of one snapshot in a hub cache (created), with ``refs/main`` pointing at it when ``main``."""
    root = hub / f"models--{repo.replace('/', '--')}"
    folder = root / "snapshots" / rev
    folder.mkdir(parents=True)
    if main:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text(rev)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A hub cache: sam2.1-hiera-tiny with the official .pt at two commits (main = the newer, one tensor changed),
    sam2-hiera-tiny with transformers' safetensors only, sam2.1-hiera-small absent."""
    hub = tmp_path_factory.mktemp("hub")
    pt = "sam2.1_hiera_tiny.pt"
    old = checkpoints.random_checkpoint("sam2.1_hiera_t", snapshot(hub, REPO_21, REV_OLD, False) / pt)
    sd = checkpoints.read_state_dict(old)
    save_pt(sd | {IOU_TOKEN: sd[IOU_TOKEN] + 1}, snapshot(hub, REPO_21, REV_NEW) / pt)
    v2 = {k: v for k, v in sd.items() if k not in SAM21_ONLY}  # SAM 2 lacks three tensors of 2.1
    write_hf(v2, get_config("sam2_hiera_t"), snapshot(hub, "facebook/sam2-hiera-tiny", REV_OLD))
    return hub, sd


@pytest.fixture
def offline(hub, tmp_path, monkeypatch):
    """``huggingface_hub`` in offline mode on the fake cache (what ``HF_HUB_OFFLINE=1 HF_HUB_CACHE=...`` sets)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub[0]))
    monkeypatch.setenv("SAM2_JAX_CACHE", str(tmp_path / "cache"))
    return hub


def _key(params):
    return np.asarray(flatten(params)[("sam_mask_decoder", "iou_token", "embedding")])


def test_hub_names_pick_the_file_the_repo_has(offline, capsys):
    from sam2_jax import cli
    from sam2_jax.build_sam import build_sam2, build_sam2_hf
    from sam2_jax.checkpoints import hub_checkpoint

    hub, sd = offline
    path = hub_checkpoint(REPO_21)
    assert path == hub / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / REV_NEW / "sam2.1_hiera_tiny.pt"
    model = build_sam2(REPO_21)
    assert model.config.name == "sam2.1_hiera_t"
    np.testing.assert_array_equal(_key(model.params), sd[IOU_TOKEN] + 1)
    # A pinned revision gets that commit's weights.
    np.testing.assert_array_equal(_key(build_sam2_hf(REPO_21, revision=REV_OLD).params), sd[IOU_TOKEN])
    # A repo with only transformers' safetensors.
    assert hub_checkpoint("facebook/sam2-hiera-tiny").name == "model.safetensors"
    v2 = build_sam2("facebook/sam2-hiera-tiny")
    assert v2.config.name == "sam2_hiera_t"
    np.testing.assert_array_equal(_key(v2.params), sd[IOU_TOKEN])
    # Nothing in the cache, offline: one line saying which file to place where (API and CLI).
    with pytest.raises(checkpoints.CheckpointUnavailable) as e:
        hub_checkpoint("facebook/sam2.1-hiera-small")
    msg = str(e.value)
    assert "\n" not in msg and "sam2.1_hiera_small.pt" in msg and str(checkpoints.cache_dir()) in msg
    with pytest.raises(ValueError, match="unknown model id"):
        hub_checkpoint("facebook/sam3")
    assert cli.main(["download", "--model", "facebook/sam2.1-hiera-large"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sam2-jax download: error: cannot get facebook/sam2.1-hiera-large")
    assert "sam2.1_hiera_large.pt" in err[0]


def test_cli_download_through_the_hub_offline(hub, tmp_path):
    """The environment variables a user sets, in a fresh process: HF_HUB_OFFLINE=1 and HF_HUB_CACHE."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub[0]), SAM2_JAX_CACHE=str(tmp_path / "cache"))
    cli = [sys.executable, "-m", "sam2_jax.cli", "download", "--quiet", "--model", REPO_21, "--revision", REV_OLD]
    r = subprocess.run(cli + ["--convert"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"snapshots/{REV_OLD}/sam2.1_hiera_tiny.pt" in r.stdout and "converted (sam2.1_hiera_t" in r.stdout


def test_no_network_is_waited_for_once(monkeypatch, tmp_path):
    """When the hub does not answer (no network: huggingface_hub raises ``LocalEntryNotFoundError`` after its
    retries, as it did here with no DNS), the second file name is looked for in the hub cache only: an offline user
    waits for one network timeout, not one per file name. The file a missing network leaves is then our own cache's,
    or a one-line error naming where to put it."""
    import huggingface_hub

    calls = []

    def fake_download(repo, filename, local_files_only=False, **kwargs):
        calls.append((filename, local_files_only))
        raise huggingface_hub.errors.LocalEntryNotFoundError("connection error, and not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("SAM2_JAX_CACHE", str(tmp_path))
    with pytest.raises(checkpoints.CheckpointUnavailable, match="sam2.1_hiera_tiny.pt"):
        checkpoints.hub_checkpoint(REPO_21)
    assert calls == [("sam2.1_hiera_tiny.pt", False), ("model.safetensors", True)]
    ours = checkpoints.random_checkpoint("sam2.1_hiera_t", checkpoints.official_checkpoint_path("sam2.1_hiera_t"))
    calls.clear()
    assert checkpoints.hub_checkpoint(REPO_21) == ours and len(calls) == 2
