"""``sam2_jax.checkpoints``: the conversion cache is keyed by content, random weights agree in both formats,
official file locations and download errors."""

import json
import os

import numpy as np
import pytest

from sam2_jax import checkpoints
from sam2_jax.convert_weights.convert import flatten
from sam2_jax.convert_weights.orbax_io import restore_params
from tests.reference import requires_torch

NAME = "sam2.1_hiera_t"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """An empty checkpoint cache: nothing of the user's is read or written."""
    monkeypatch.setenv("SAM2_JAX_CACHE", str(tmp_path / "cache"))


def _same_mtime(path, stat):
    """Put back the old mtime: a cache keyed by name, size and mtime would serve the old conversion."""
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _assert_params_equal(a, b):
    fa, fb = flatten(a), flatten(b)
    assert set(fa) == set(fb)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg="/".join(k))


@requires_torch
def test_changed_or_truncated_checkpoint_is_not_served_from_cache(tmp_path):
    pt = tmp_path / "sam2.1_hiera_tiny.pt"
    checkpoints.random_checkpoint(NAME, pt, seed=0)
    first = checkpoints.convert_checkpoint(pt)
    assert not first.cached and first.config_name == NAME and first.num_tensors == 471
    assert first.path.is_relative_to(tmp_path / "cache") and first.sha256 == checkpoints.sha256_file(pt)
    record = json.loads((first.path.parent / "source.json").read_text())
    assert record["sha256"] == first.sha256 and record["size"] == pt.stat().st_size
    # The random weights are the same in both formats (the CLI's --random-weights and the demo's fallback).
    _assert_params_equal(restore_params(first.path), checkpoints.random_params(NAME, seed=0))

    again = checkpoints.convert_checkpoint(pt)
    assert again.cached and again.path == first.path
    assert checkpoints.resolve_checkpoint(pt).load_path == first.path

    # Other weights under the same name, size and mtime: a new conversion, never the old one.
    stat = pt.stat()
    checkpoints.random_checkpoint(NAME, pt, seed=1)
    assert pt.stat().st_size == stat.st_size
    _same_mtime(pt, stat)
    source = checkpoints.resolve_checkpoint(pt)
    assert source.load_path == pt and source.sha256 != first.sha256
    assert checkpoints.cached_conversion(pt) is None
    changed = checkpoints.convert_checkpoint(pt)
    assert not changed.cached and changed.path != first.path and changed.sha256 == source.sha256
    assert checkpoints.resolve_checkpoint(pt).load_path == changed.path
    params = restore_params(changed.path)
    key = ("sam_mask_decoder", "iou_token", "embedding")
    assert not np.array_equal(flatten(params)[key], flatten(restore_params(first.path))[key])

    # Truncated in place (same name and mtime): read as the file it is now, and refused.
    data = pt.read_bytes()
    stat = pt.stat()
    pt.write_bytes(data[: len(data) // 2])
    _same_mtime(pt, stat)
    source = checkpoints.resolve_checkpoint(pt)
    assert source.load_path == pt and source.sha256 not in (first.sha256, changed.sha256)
    with pytest.raises(ValueError, match="could not be read"):
        checkpoints.convert_checkpoint(pt)
    from sam2_jax.build_sam import build_sam2

    with pytest.raises(ValueError, match="could not be read"):
        build_sam2(NAME, source.load_path)
    # Only the two good conversions are in the cache: nothing half-written is left behind.
    entries = sorted(p.name for p in (tmp_path / "cache" / "converted").iterdir())
    assert entries == sorted([first.path.parent.name, changed.path.parent.name])


@requires_torch
def test_conversion_to_a_given_folder_and_export(tmp_path):
    from sam2_jax.convert_weights.convert import load_torch_state_dict

    pt = checkpoints.random_checkpoint(NAME, tmp_path / "w.pt", seed=3)
    out = tmp_path / "orbax"
    conv = checkpoints.convert_checkpoint(pt, out, config="sam2.1_hiera_tiny")
    assert conv.path == out and not conv.cached and out.is_dir()
    assert not (tmp_path / "cache").exists()  # an explicit folder is not a cache entry
    with pytest.raises(ValueError, match="already exists"):
        checkpoints.convert_checkpoint(pt, out)
    with pytest.raises(ValueError, match="is a sam2.1_hiera_t model, but config sam2.1_hiera_s was requested"):
        checkpoints.convert_checkpoint(pt, tmp_path / "o2", config="sam2.1_hiera_s")
    back = checkpoints.export_checkpoint(out, NAME, tmp_path / "back.pt")
    a, b = load_torch_state_dict(pt), load_torch_state_dict(back)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_official_location_and_offline_download(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    path = checkpoints.official_checkpoint_path("sam2.1_hiera_small")
    assert path == tmp_path / "cache" / "sam2.1_hiera_small.pt"
    with pytest.raises(checkpoints.CheckpointUnavailable, match="downloading is off"):
        checkpoints.get_checkpoint("sam2.1_hiera_s", download=False)

    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(checkpoints.CheckpointUnavailable) as e:
        checkpoints.get_checkpoint("sam2.1_hiera_s")
    assert "cannot download sam2.1_hiera_small.pt" in str(e.value) and str(path) in str(e.value)
    assert not path.exists() and not list(path.parent.glob("*.part"))
    path.write_bytes(b"x")  # a cached file is returned without any network
    assert checkpoints.get_checkpoint("sam2.1_hiera_s") == path
    with pytest.raises(ValueError, match="does not exist"):
        checkpoints.resolve_checkpoint(tmp_path / "absent.pt")
