"""The torch-free ``.pt`` reader and writer (``convert_weights.pt_format``): equal to ``torch.load`` / readable by it,
bit for bit; a pickle that would run code is refused without running; broken files give one-line errors."""

import io
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from sam2_jax import checkpoints
from sam2_jax.configs import get_config
from sam2_jax.convert_weights.convert import load_torch_state_dict
from sam2_jax.convert_weights.pt_format import UnsafeCheckpointError, load_pt, save_pt
from tests.reference import OFFICIAL_YAML, have_torch, requires_torch

NAME = "sam2.1_hiera_t"
requires_plain_torch = pytest.mark.skipif(
    not have_torch(), reason="torch==2.13.0 (the reference install) is needed to compare with torch.load"
)


def _as_numpy(t):
    """A torch tensor as numpy, bfloat16 through its bits (torch's .numpy() has no bfloat16)."""
    import torch

    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _assert_same_as_torch(ours: dict, theirs: dict):
    assert list(ours) == list(theirs)  # same keys, same order
    for k, t in theirs.items():
        want = _as_numpy(t)
        assert ours[k].dtype == want.dtype and ours[k].shape == want.shape, k
        assert ours[k].tobytes() == want.tobytes(), k  # bit for bit (NaN payloads, -0.0 included)


@requires_plain_torch
def test_reader_equals_torch_load_on_torch_saved_checkpoint(tmp_path):
    """An official-layout checkpoint written by ``torch.save`` (torch 2.13 defaults, the new zipfile format), with
    float16 / bfloat16 / int / bool tensors, views with offsets and strides, and storages shared between keys."""
    import torch

    ours_pt = checkpoints.random_checkpoint(NAME, tmp_path / "ours.pt", seed=0)  # our writer
    sd = torch.load(ours_pt, weights_only=True)["model"]
    assert len(sd) == 471
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 7, generator=g)
    base[0, 0], base[0, 1] = float("nan"), -0.0
    extra = {
        "x.half": torch.randn(5, 3, generator=g).half(),
        "x.bf16": torch.randn(4, 2, generator=g).to(torch.bfloat16),
        "x.f64": torch.randn(3, generator=g).double(),
        "x.base": base,
        "x.transposed": base.t(),  # shares base's storage, strides (1, 7)
        "x.row": base[3],  # offset 21
        "x.cols": base[1:5, 2:6:2],  # offset and a step
        "x.long": torch.arange(-3, 9),
        "x.bool": torch.tensor([True, False, True]),
        "x.scalar": torch.tensor(2.5),
        "x.empty": torch.zeros(0, 4),
    }
    sd.update(extra)
    path = tmp_path / "torch_saved.pt"
    torch.save({"model": sd}, path, _use_new_zipfile_serialization=True)
    ours = load_pt(path)
    assert list(ours) == ["model"]
    _assert_same_as_torch(ours["model"], torch.load(path, weights_only=True)["model"])
    # The state-dict reader keeps every official key and gives float32 for the floating ones.
    sd32 = load_torch_state_dict(path)
    assert sd32["x.bf16"].dtype == np.float32 and sd32["x.long"].dtype == np.int64


@requires_plain_torch
def test_writer_output_loads_with_torch_and_the_official_model(tmp_path):
    import torch

    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal(5).astype(np.float16),
        "bf16": rng.standard_normal((2, 2)).astype(ml_dtypes.bfloat16),
        "i64": np.arange(7),
        "b": np.array([True, False]),
        "scalar": np.float32(1.5) * np.ones((), np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2)).astype(np.float32)),
    }
    path = tmp_path / "w.pt"
    save_pt(arrays, path)
    got = torch.load(path, weights_only=True)["model"]
    for k, a in arrays.items():
        assert _as_numpy(got[k]).tobytes() == np.ascontiguousarray(a).tobytes() and tuple(got[k].shape) == a.shape
    mapped = torch.load(path, weights_only=True, mmap=True)["model"]  # mmap needs torch's 64-byte record alignment
    assert _as_numpy(mapped["bf16"]).tobytes() == arrays["bf16"].tobytes()
    from sam2.build_sam import build_sam2

    pt = checkpoints.random_checkpoint(NAME, tmp_path / "tiny.pt", seed=1)
    model = build_sam2(OFFICIAL_YAML[NAME], str(pt), device="cpu")  # the official loader is strict
    theirs = {k: _as_numpy(v) for k, v in model.state_dict().items()}
    ours = load_torch_state_dict(pt)
    assert set(theirs) == set(ours) and all(np.array_equal(theirs[k], ours[k]) for k in ours)


class _RunsCode:
    """Unpickles as ``os.system(cmd)``: what a hostile checkpoint would carry."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")


@pytest.mark.parametrize("kind", ["os.system", "eval", "torch_module", "persistent_id"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        obj = {"model": {"w": _RunsCode(f"touch {marker}")}}
        payload = pickle.dumps(obj, protocol=2)
    elif kind == "eval":
        payload = b"cbuiltins\neval\n(X" + len(f"open('{marker}','w')").to_bytes(4, "little")
        payload += f"open('{marker}','w')".encode() + b"tR."
    elif kind == "torch_module":
        payload = b"ctorch.nn.modules.linear\nLinear\n)R."  # a torch global outside the tensor format
    else:  # a persistent id that is not a tensor storage
        payload = b"\x80\x02(X\x04\x00\x00\x00evilK\x01tQ."
    assert b"pwned" in payload or kind in ("torch_module", "persistent_id")
    path = tmp_path / "evil.pt"
    _zip_with_pickle(path, payload)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load global|unexpected persistent id") as e:
        load_pt(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        checkpoints.convert_checkpoint(path)  # the real code path refuses it too
    assert not marker.exists()


def test_broken_files_give_one_line_errors(tmp_path):
    pt = checkpoints.random_checkpoint(NAME, tmp_path / "w.pt", seed=0)
    data = pt.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "text.pt": b"this is not a checkpoint\n",
        "empty.pt": b"",
        "legacy.pt": pickle.dumps({"model": {}}),  # the pre-1.6 non-zip format is not read
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="could not be read") as e:
            load_pt(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
    # A view that reaches past its storage (a crafted record) is refused, not read out of bounds.
    buf = io.BytesIO()
    with zipfile.ZipFile(pt) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            dst.writestr(info, content if not info.filename.endswith("data/0") else content[:4])
    (tmp_path / "short_storage.pt").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="storage 0 has 4 bytes"):
        load_pt(tmp_path / "short_storage.pt")
    _zip_with_pickle(tmp_path / "list.pt", pickle.dumps([1, 2], protocol=2))
    assert load_pt(tmp_path / "list.pt") == [1, 2]
    with pytest.raises(ValueError, match="has no 'model' state dict"):
        load_torch_state_dict(tmp_path / "list.pt")


def test_out_of_bounds_view_is_refused():
    from sam2_jax.convert_weights.pt_format import rebuild_tensor_v2

    storage = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(rebuild_tensor_v2(storage, 2, (2, 3), (3, 1)), storage[2:8].reshape(2, 3))
    with pytest.raises(pickle.UnpicklingError, match="reaches past its storage"):
        rebuild_tensor_v2(storage, 5, (2, 3), (3, 1))
    with pytest.raises(pickle.UnpicklingError, match="malformed"):
        rebuild_tensor_v2(storage, 0, (2,), (-1,))


def test_round_trip_without_torch(tmp_path):
    """Our writer -> our reader is the identity, and the state dict converts strictly (no torch involved)."""
    pt = checkpoints.random_checkpoint(NAME, tmp_path / "w.pt", seed=2)
    sd = load_torch_state_dict(pt)
    save_pt(sd, tmp_path / "again.pt")
    again = load_pt(tmp_path / "again.pt")["model"]
    assert list(again) == list(sd) and all(again[k].tobytes() == sd[k].tobytes() for k in sd)
    assert checkpoints.convert_checkpoint(pt).num_tensors == 471


@requires_torch
@pytest.mark.slow
@pytest.mark.parametrize("name", list(OFFICIAL_YAML))
def test_reader_equals_torch_load_on_official_models(tmp_path, name):
    """Checkpoints of all eight configs written by the official code (``build_sam2`` + ``torch.save``)."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(OFFICIAL_YAML[name], None, device="cpu")
    with torch.no_grad():
        for p in model.parameters():  # every tensor distinct, as a trained checkpoint
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / f"{name}.pt"
    torch.save({"model": model.state_dict()}, path)
    _assert_same_as_torch(load_pt(path)["model"], torch.load(path, weights_only=True)["model"])
    assert checkpoints.convert_checkpoint(path).config_name == get_config(name).name
