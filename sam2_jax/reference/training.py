"""The official ``SAM2Train`` and its loss, for parity of our training forward. Imports the official ``training``
package (installed with sam2==1.1.0) without its heavy optional dependencies.

``training/loss_fns.py`` imports ``CORE_LOSS_KEY`` from ``training/trainer.py``, which pulls in ``tensordict``,
``fvcore`` and the whole trainer; neither is a dependency of this project. When that import fails, a module holding
only the constant (``"core_loss"``, as in the official trainer) stands in for ``training.trainer``; the loss code
itself is the official one.
"""

import sys
import types

from sam2_jax.reference import OFFICIAL_YAML
from sam2_jax.reference.image import reference_state_dict


def official_loss_fns():
    """The official ``training.loss_fns`` module."""
    try:
        import training.trainer  # noqa: F401
    except ImportError:
        stub = types.ModuleType("training.trainer")
        stub.CORE_LOSS_KEY = "core_loss"
        sys.modules["training.trainer"] = stub
    import training.loss_fns

    return training.loss_fns


def official_sam2_utils_with_exact_edt():
    """The official ``sam2.modeling.sam2_utils``; when OpenCV is absent, ``cv2.distanceTransform`` (used only by
    ``sample_one_point_from_error_center``) is provided by scipy's exact Euclidean distance transform, which is what
    ``DIST_L2`` with mask size 0 (``DIST_MASK_PRECISE``) computes."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        import numpy as np
        from scipy import ndimage

        stub = types.ModuleType("cv2")
        stub.DIST_L2 = 2
        stub.distanceTransform = lambda src, dist_type, mask_size: ndimage.distance_transform_edt(src).astype(
            np.float32
        )
        sys.modules["cv2"] = stub
    import sam2.modeling.sam2_utils

    return sam2.modeling.sam2_utils


def install_fvcore_schedulers() -> None:
    """When fvcore is absent, provide the two ``fvcore.common.param_scheduler`` classes the official MOSE config
    names, with fvcore's definitions (``ConstantParamScheduler(value)``; ``CosineParamScheduler(start_value,
    end_value)(where) = end + 0.5 (start - end) (1 + cos(pi where))``)."""
    try:
        import fvcore.common.param_scheduler  # noqa: F401

        return
    except ImportError:
        pass
    import math

    class ConstantParamScheduler:
        def __init__(self, value):
            self._value = value

        def __call__(self, where):
            if where >= 1.0:
                raise RuntimeError(f"where in ParamScheduler must be in [0, 1]: got {where}")
            return self._value

    class CosineParamScheduler:
        def __init__(self, start_value, end_value):
            self._start_value, self._end_value = start_value, end_value

        def __call__(self, where):
            return self._end_value + 0.5 * (self._start_value - self._end_value) * (1 + math.cos(math.pi * where))

    mods = {n: types.ModuleType(n) for n in ("fvcore", "fvcore.common", "fvcore.common.param_scheduler")}
    mods["fvcore.common.param_scheduler"].ConstantParamScheduler = ConstantParamScheduler
    mods["fvcore.common.param_scheduler"].CosineParamScheduler = CosineParamScheduler
    mods["fvcore"].common = mods["fvcore.common"]
    mods["fvcore.common"].param_scheduler = mods["fvcore.common.param_scheduler"]
    sys.modules.update(mods)


def official_mose_optim_config():
    """The ``trainer.optim`` section of the official MOSE fine-tune YAML, interpolations resolved."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    for name, fn in (("divide", lambda a, b: a / b), ("times", lambda a, b: a * b)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    path = files("sam2") / "configs" / "sam2.1_training" / "sam2.1_hiera_b+_MOSE_finetune.yaml"
    cfg = OmegaConf.load(str(path))
    return cfg.trainer.optim


def official_sam2train(name: str, image_size: int, num_correction: int, seed: int = 0):
    """The official ``training.model.sam2.SAM2Train`` with the shared reference weights, in eval mode (no dropout,
    deterministic ``center`` corrective clicks) but with the training-mode pointer rule
    (``only_obj_ptrs_in_the_past_for_eval=False``) and without ``build_sam2``'s inference post-processing.

    ``training/utils/data_utils.py`` needs ``tensordict`` only for its ``@tensorclass`` decorator; when it is absent
    the decorator is the identity (the harness passes a plain namespace as the batch)."""
    try:
        import tensordict  # noqa: F401
    except ImportError:
        stub = types.ModuleType("tensordict")
        stub.tensorclass = lambda cls=None, **kw: cls if cls is not None else (lambda c: c)
        sys.modules["tensordict"] = stub
    official_sam2_utils_with_exact_edt()
    import torch
    from sam2.build_sam import build_sam2

    overrides = [
        "++model._target_=training.model.sam2.SAM2Train",
        f"++model.image_size={image_size}",
        f"++model.num_correction_pt_per_frame={num_correction}",
        "++model.pt_sampling_for_eval=center",
        "++model.only_obj_ptrs_in_the_past_for_eval=false",
        "++model.add_all_frames_to_correct_as_cond=true",
    ]
    torch.manual_seed(seed)
    yaml = OFFICIAL_YAML[name]
    model = build_sam2(
        yaml, None, device="cpu", mode="eval", hydra_overrides_extra=overrides, apply_postprocessing=False
    )
    sd = reference_state_dict(name, seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return model


def official_clip_forward(model, images, masks, init_frames, prompt_types, correct_frames):
    """Run the official ``forward_tracking`` on one clip with the given prompts (the decisions of
    ``prepare_prompt_inputs`` fixed by the caller) and return the official loss dict (MOSE weights).

    Args:
        images: (T, 3, S, S) float32 normalised torch tensor. masks: (T, N, S, S) bool torch tensor.
        init_frames: initial conditioning frames; prompt_types: per initial frame "mask" / "click" / "box".
        correct_frames: frames that receive corrective clicks (the initial point-prompted ones first).
    """
    from types import SimpleNamespace

    import torch

    su = official_sam2_utils_with_exact_edt()
    lf = official_loss_fns()
    T, N = masks.shape[:2]
    batch = SimpleNamespace(
        flat_img_batch=images, masks=masks, num_frames=T, flat_obj_to_img_idx=torch.arange(T)[:, None].expand(T, N)
    )
    backbone_out = model.forward_image(images)
    gt = {t: masks[t].unsqueeze(1) for t in range(T)}
    points, mask_inputs = {}, {}
    for t, kind in zip(init_frames, prompt_types, strict=True):
        if kind == "mask":
            mask_inputs[t] = gt[t]
        elif kind == "box":
            c, lbl = su.sample_box_points(gt[t], noise=0.0)
            points[t] = {"point_coords": c, "point_labels": lbl}
        else:
            c, lbl = su.get_next_point(gt[t], None, "center")
            points[t] = {"point_coords": c, "point_labels": lbl}
    backbone_out.update(
        gt_masks_per_frame=gt,
        num_frames=T,
        use_pt_input=bool(points),
        init_cond_frames=list(init_frames),
        frames_not_in_init_cond=[t for t in range(T) if t not in init_frames],
        mask_inputs_per_frame=mask_inputs,
        point_inputs_per_frame=points,
        frames_to_add_correction_pt=list(correct_frames),
    )
    outs = model.forward_tracking(backbone_out, batch)
    crit = lf.MultiStepMultiMasksAndIous(
        {"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
    return crit(outs, masks.float())
