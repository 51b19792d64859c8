"""Our ml_collections configs hold every field of the official YAMLs with the same values."""

import pytest

from sam2_jax.configs import NAMES, get_config
from tests.reference import OFFICIAL_YAML, requires_torch


def _walk(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_":
                continue
            yield from _walk(v, prefix + (k,))
    else:
        yield prefix, node


# Where our nesting differs from the YAML's (the YAML nests layer modules by _target_), the path in ours.
RENAMES = {
    ("memory_attention", "layer", "self_attention"): ("memory_attention", "layer", "self_attention"),
}


@requires_torch
@pytest.mark.parametrize("name", NAMES)
def test_config_matches_official_yaml(name):
    import os

    import sam2
    from omegaconf import OmegaConf

    yaml = OmegaConf.to_container(OmegaConf.load(os.path.join(os.path.dirname(sam2.__file__), OFFICIAL_YAML[name])))[
        "model"
    ]
    ours = get_config(name).model.to_dict()
    checked = 0
    for path, value in _walk(yaml):
        node = ours
        for k in path:
            assert k in node, f"{name}: official field {'.'.join(path)} missing from our config"
            node = node[k]
        want = tuple(value) if isinstance(value, list) else value
        got = tuple(node) if isinstance(node, list | tuple) else node
        assert got == want, f"{name}: {'.'.join(path)} is {got!r}, official {want!r}"
        checked += 1
    assert checked > 60
    # the post-processing overrides of the official build_sam2
    extra = ours["sam_mask_decoder_extra_args"]
    assert extra == dict(
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    )


def test_config_names_and_errors():
    assert get_config("sam2.1_hiera_tiny").name == "sam2.1_hiera_t"
    assert get_config("sam2_hiera_b+").model.image_encoder.trunk.embed_dim == 112
    with pytest.raises(ValueError, match="unknown model config 'sam3'"):
        get_config("sam3")
