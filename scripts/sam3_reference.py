"""Record SAM 3's own memory selection (github facebookresearch/sam3, PyPI ``sam3==0.1.4``, SAM License: run here as
a reference only, nothing of it is copied into sam2_jax) for the test of our ``sam3_selection`` policy
(``tests/test_tracker_policies.py``).

SAM 3's tracker (``sam3/model/sam3_tracker_base.py``) is not run end to end: its
``_prepare_memory_conditioned_features`` and ``_get_tpos_enc`` move tensors with ``.cuda()`` and ``pin_memory()``,
its memory encoder resizes masks to 1152 px and its RoPE attention is built for 72 x 72 features (1008 px, stride
14), and its state-dict names differ from SAM 2.1's (``transformer.encoder`` for ``memory_attention``,
``maskmem_backbone`` for ``memory_encoder``). This script calls its selection methods as they are,
``Sam3TrackerBase.cal_mem_score`` and ``Sam3TrackerBase.frame_filter``, on recorded per-frame object scores and
predicted IoUs (the object as SAM 3 stores it in ``output_dict``), with ``mf_threshold = 0.01`` and
``max_obj_ptrs_in_encoder = 16`` as ``build_tracker`` sets them.

    python3 -m venv /work/venv-sam3 && /work/venv-sam3/bin/pip install torch==2.13.0  # the CPU build on disk
    /work/venv-sam3/bin/pip install numpy pillow einops iopath tqdm
    /work/venv-sam3/bin/pip install --no-deps sam3==0.1.4  # its timm, triton, huggingface_hub are not needed here
    # + a .pth file in its site-packages naming a folder with two stand-ins: ``timm/layers`` exporting
    #   ``torch.nn.init.trunc_normal_`` and an eval-only ``DropPath``, and ``huggingface_hub.hf_hub_download``
    #   raising (timm needs torchvision, which cannot load beside torch 2.13.0+cpu)
    /work/venv-sam3/bin/python scripts/sam3_reference.py tests/golden/sam3_selection.npz

``sam3/__init__.py`` imports the whole model builder (text encoder, triton kernels, datasets); the script imports
``sam3.model.sam3_tracker_base`` alone, with ``sam3.model.edt`` (a triton distance transform for training clicks) and
``sam3.train.data.collator`` (a type hint) replaced by empty modules.
"""

import importlib.util
import sys
import types


def _import_tracker_base():
    spec = importlib.util.find_spec("sam3")
    pkg = types.ModuleType("sam3")  # skip sam3/__init__.py (the whole model builder)
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["sam3"] = pkg
    edt = types.ModuleType("sam3.model.edt")
    edt.edt_triton = None
    collator = types.ModuleType("sam3.train.data.collator")
    collator.BatchedDatapoint = object
    sys.modules.update({"sam3.model.edt": edt, "sam3.train.data.collator": collator})
    from sam3.model import sam3_tracker_base

    return sam3_tracker_base.Sam3TrackerBase


def main(out: str, objects: int = 6, frames: int = 60) -> None:
    import numpy as np
    import torch

    base = _import_tracker_base()
    tracker = types.SimpleNamespace(mf_threshold=0.01, max_obj_ptrs_in_encoder=16)  # build_tracker's values
    rng = np.random.default_rng(0)
    obj = rng.normal(0.0, 0.15, (objects, frames)).astype(np.float32)
    iou = rng.uniform(0.0, 1.0, (objects, frames)).astype(np.float32)
    cond = {0, 23, 24}  # conditioning frames (prompted): not in non_cond_frame_outputs
    score = np.zeros((objects, frames), np.float32)
    valid = np.full((objects, frames, 16), -1, np.int16)  # frame_filter's list when frame t is tracked
    for o in range(objects):
        output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        for t in range(frames):
            v = base.frame_filter(tracker, output_dict, False, t, frames, 1)
            valid[o, t, : len(v)] = v
            s = base.cal_mem_score(tracker, torch.tensor([[obj[o, t]]]), torch.tensor([iou[o, t]]))
            score[o, t] = float(s)
            key = "cond_frame_outputs" if t in cond else "non_cond_frame_outputs"
            output_dict[key][t] = {"eff_iou_score": s}
    print("admitted", (score > tracker.mf_threshold).mean())
    np.savez_compressed(
        out,
        obj_score=obj,
        iou=iou,
        cond=np.array(sorted(cond)),
        eff_iou_score=score,
        valid=valid,
        mf_threshold=tracker.mf_threshold,
    )
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
