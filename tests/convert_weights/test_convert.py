"""The converter: strict both ways, bit-exact round trip, clear errors on broken checkpoints."""

import numpy as np
import pytest

from sam2_jax.configs import get_config
from sam2_jax.convert_weights.__main__ import main as convert_main
from sam2_jax.convert_weights.convert import (
    convert_state_dict,
    infer_config_name,
    load_torch_state_dict,
    params_to_state_dict,
    save_torch_state_dict,
)
from sam2_jax.convert_weights.mapping import param_table
from tests.reference import official_model, reference_state_dict, requires_torch

NAME = "sam2.1_hiera_t"


@pytest.fixture(scope="module")
def shapes():

    from sam2_jax.checkpoints import param_shapes
    from sam2_jax.modeling.sam2_model import make_module

    return param_shapes(make_module(get_config(NAME).model))


@requires_torch
def test_round_trip_bit_exact(shapes, tmp_path):
    sd = reference_state_dict(NAME)
    table = param_table(get_config(NAME))
    params = convert_state_dict(sd, table, shapes)
    back = params_to_state_dict(params, table)
    assert set(back) == set(sd)
    for k in sd:
        assert back[k].shape == sd[k].shape, k
        assert np.array_equal(back[k], sd[k]), k
    # through files and the CLI: .pt -> orbax -> .pt, then the official model loads it strictly
    pt = tmp_path / "in.pt"
    save_torch_state_dict(sd, pt)
    assert convert_main(["--checkpoint", str(pt), "--out", str(tmp_path / "orbax")]) == 0
    assert convert_main(["--export", str(tmp_path / "orbax"), "--config", NAME, "--out", str(tmp_path / "out.pt")]) == 0
    out = load_torch_state_dict(tmp_path / "out.pt")
    for k in sd:
        assert np.array_equal(out[k], sd[k]), k
    import torch

    model = official_model(NAME)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()}, strict=True)


@requires_torch
def test_broken_checkpoints_name_the_problem(shapes):
    sd = reference_state_dict(NAME)
    table = param_table(get_config(NAME))
    removed = dict(sd)
    del removed["sam_mask_decoder.iou_token.weight"]
    with pytest.raises(ValueError, match=r"missing from the checkpoint: sam_mask_decoder\.iou_token\.weight"):
        convert_state_dict(removed, table, shapes)
    added = dict(sd, **{"memory_attention.layers.9.linear1.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match=r"not used by this model config: memory_attention\.layers\.9\.linear1"):
        convert_state_dict(added, table, shapes)
    reshaped = dict(sd, **{"memory_encoder.out_proj.weight": np.zeros((32, 256, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"memory_encoder\.out_proj\.weight: checkpoint shape \(32, 256, 1, 1\)"):
        convert_state_dict(reshaped, table, shapes)
    # a tiny checkpoint with the small config: the extra blocks are named
    with pytest.raises(ValueError, match=r"image_encoder\.trunk\.blocks\.1[2-5]"):
        convert_state_dict(sd, param_table(get_config("sam2.1_hiera_s")))


@requires_torch
def test_wrong_model_and_truncated_file(tmp_path):
    from sam2_jax.build_sam import build_sam2

    sd = reference_state_dict(NAME)
    assert infer_config_name(sd) == NAME
    pt = tmp_path / "tiny.pt"
    save_torch_state_dict(sd, pt)
    with pytest.raises(ValueError, match="is a sam2.1_hiera_t model, but config sam2.1_hiera_s was requested"):
        build_sam2("sam2.1_hiera_s", pt)
    with pytest.raises(ValueError, match="is a sam2.1_hiera_t model, but config sam2_hiera_t"):
        build_sam2("configs/sam2/sam2_hiera_t.yaml", pt)
    data = pt.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="could not be read"):
        build_sam2(NAME, bad)
    with pytest.raises(ValueError, match="does not exist"):
        build_sam2(NAME, tmp_path / "nope.pt")
    assert convert_main(["--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 1


@requires_torch
@pytest.mark.parametrize(
    "name",
    ["sam2_hiera_t", "sam2.1_hiera_s"]
    + [
        pytest.param(n, marks=pytest.mark.slow)
        for n in ("sam2.1_hiera_b+", "sam2.1_hiera_l", "sam2_hiera_s", "sam2_hiera_b+", "sam2_hiera_l")
    ],
)
def test_every_size_converts_strictly(name):
    from sam2_jax.checkpoints import param_shapes
    from sam2_jax.modeling.sam2_model import make_module

    config = get_config(name)

    shapes = param_shapes(make_module(config.model))
    sd = reference_state_dict(name)
    assert infer_config_name(sd) == name
    params = convert_state_dict(sd, param_table(config), shapes)
    back = params_to_state_dict(params, param_table(config))
    assert all(np.array_equal(back[k], sd[k]) for k in sd)
    assert (
        len(sd)
        == {
            "sam2_hiera_t": 468,
            "sam2.1_hiera_s": 519,
            "sam2.1_hiera_b+": 615,
            "sam2.1_hiera_l": 903,
            "sam2_hiera_s": 516,
            "sam2_hiera_b+": 612,
            "sam2_hiera_l": 900,
        }[name]
    )
