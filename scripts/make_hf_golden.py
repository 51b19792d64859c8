"""Writes tests/golden/hf_keys.json: for each official config, the key names and shapes of transformers'
``Sam2VideoModel`` and ``Sam2Model`` built (on the meta device: no weights) from our ``hf_config``, stored as a
count and a SHA-256 of the sorted ``key shape`` lines (a few KB; no values).

Needs ``transformers`` (the version is recorded in the file). Run from the repository root:
``python scripts/make_hf_golden.py``. The reference install's torchvision stand-in is dropped from ``sys.path``
first: transformers would mistake it for torchvision.
"""

import json
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if "tvshim" not in p]
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def transformers_shapes(name: str) -> dict:
    """The two models' key -> shape for one config, from transformers itself."""
    import torch
    import transformers

    from sam2_jax.configs import get_config
    from sam2_jax.convert_weights.hf_format import hf_config

    out = {}
    for image_only, model_cls, config_cls in (
        (False, transformers.Sam2VideoModel, transformers.Sam2VideoConfig),
        (True, transformers.Sam2Model, transformers.Sam2Config),
    ):
        with torch.device("meta"):
            model = model_cls(config_cls.from_dict(hf_config(get_config(name), image_only)))
        out["image" if image_only else "video"] = {k: list(v.shape) for k, v in model.state_dict().items()}
    return out


def main() -> None:
    import transformers

    from sam2_jax.configs import NAMES
    from sam2_jax.convert_weights.hf_format import key_digest

    golden = {"transformers": transformers.__version__, "configs": {}}
    for name in NAMES:
        golden["configs"][name] = {kind: key_digest(s) for kind, s in transformers_shapes(name).items()}
    path = REPO / "tests" / "golden" / "hf_keys.json"
    path.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
