"""Port of the optimiser of the official trainer (``training/optimizer.py`` and the ``optim`` section of
``sam2/configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml``) as an optax ``GradientTransformation``.

Param groups are decided per parameter from its official name (our path -> torch key through the converter's
table), with the official rules:
- learning rate: ``base_lr`` schedule, ``vision_lr`` schedule for ``image_encoder.*``;
- layer-wise decay (``layer_decay_param_modifier`` with ``apply_to='image_encoder.trunk'``): Hiera's
  ``get_layer_id`` gives layer 0 to ``patch_embed`` / ``pos_embed``, ``i + 1`` to ``blocks.i`` and ``L + 1`` to the
  rest; the multiplier is ``decay ** (L + 1 - layer_id)``; names matching an override pattern (``*pos_embed*``)
  take the override's value; parameters outside the trunk keep 1;
- weight decay: the configured value, 0 for names matching ``*bias*`` and for the parameters of ``torch.nn.LayerNorm``
  modules (exactly that class: the ``LayerNorm2d`` of the mask decoder, prompt encoder and memory encoder keeps
  its weight decay on the weight, as in the official code);
- gradient clipping by the global L2 norm (``GradientClipper``), AdamW (torch defaults: betas 0.9/0.999, eps 1e-8,
  decoupled weight decay scaled by the learning rate);
- schedules of the fraction of training done ``where = step / total_steps`` (the official trainer's
  ``where = epoch / max_epochs``): fvcore's ``CosineParamScheduler`` (the MOSE fine-tune) and
  ``ConstantParamScheduler``, plus the paper's reciprocal square root with linear warm-up and linear cool-down
  (App. D.2, pre-training; the official repository ships no config and no scheduler class for it).

Deviations: the official model has one buffer that our params hold as a leaf, the prompt encoder's random Fourier
matrix ``pe_layer.positional_encoding_gaussian_matrix``; it is never updated (and its gradient takes no part in the
clipping norm), as a buffer is not. ``freeze_image_encoder`` freezes the image encoder the same way.
"""

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam2_jax.convert_weights.mapping import param_table

# Official buffers that our params hold as leaves: never trained.
BUFFERS = ("sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",)
# Modules of class ``LayerNorm2d`` (not ``torch.nn.LayerNorm``) in the official model.
_LAYERNORM2D = re.compile(
    r"(output_upscaling|mask_downscaling|mask_downsampler\.encoder)\.\d+$|fuser\.layers\.\d+\.norm$"
)


def torch_names(params: Mapping, model_config: ml_collections.ConfigDict) -> dict[tuple[str, ...], str]:
    """The official parameter name of each of our leaves.

    Args:
        params: our param tree.
        model_config: the model config (``config.model`` parent: the full config with ``.model``).

    Returns:
        dict from our leaf path (tuple of keys) to the official state-dict key.
    """
    table = {p: k for p, k, _ in param_table(model_config)}
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    out = {}
    for path, _ in leaves:
        p = tuple(getattr(k, "key", str(k)) for k in path)
        if p not in table:
            raise ValueError(f"param {'/'.join(p)} has no official name in the converter's table")
        out[p] = table[p]
    return out


def hiera_layer_id(name: str, num_blocks: int) -> int:
    """Official ``Hiera.get_layer_id`` on a full parameter name."""
    if "rel_pos" in name:
        return num_blocks + 1
    if "pos_embed" in name or "patch_embed" in name:
        return 0
    if "blocks" in name:
        return int(name.split("blocks")[1].split(".")[1]) + 1
    return num_blocks + 1


def lr_multiplier(name: str, num_blocks: int, optim: ml_collections.ConfigDict) -> float:
    """Layer-decay multiplier of one parameter (official ``layer_decay_param_modifier``).

    Args:
        name: official parameter name.
        num_blocks: number of Hiera blocks (``sum(stages)``).
        optim: ``config.train.optim`` (``layer_decay``, ``layer_decay_apply_to``, ``layer_decay_overrides``).

    Returns:
        The factor on the parameter's learning-rate schedule.
    """
    if not optim.layer_decay or optim.layer_decay == 1.0 or not name.startswith(optim.layer_decay_apply_to):
        return 1.0
    for pattern, value in optim.layer_decay_overrides:
        if fnmatch.fnmatchcase(name, pattern):
            return float(value)
    n = num_blocks + 1
    return optim.layer_decay ** (n - hiera_layer_id(name, num_blocks))


def uses_vision_lr(name: str, optim: ml_collections.ConfigDict) -> bool:
    """Whether a parameter follows the vision learning rate (official ``param_names: ['image_encoder.*']``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in optim.vision_lr_param_names)


def weight_decay_value(name: str, is_layernorm: bool, optim: ml_collections.ConfigDict) -> float:
    """Weight decay of one parameter: 0 for ``*bias*`` names and ``torch.nn.LayerNorm`` parameters."""
    if is_layernorm or any(fnmatch.fnmatchcase(name, p) for p in optim.no_weight_decay_param_names):
        return 0.0
    return float(optim.weight_decay)


def param_groups(params: Mapping, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Per-leaf optimiser settings, as pytrees shaped like ``params``.

    Args:
        params: our param tree.
        config: the full config (``.model`` and ``.train.optim``).

    Returns:
        dict with ``lr_mult`` (float), ``vision`` (bool), ``weight_decay`` (float), ``trainable`` (bool) trees.
    """
    optim = config.train.optim
    names = torch_names(params, config)
    num_blocks = sum(config.model.image_encoder.trunk.stages)
    norm_modules = {n.rsplit(".", 1)[0] for p, n in names.items() if p[-1] == "scale"}
    norm_modules = {m for m in norm_modules if not _LAYERNORM2D.search(m)}

    def per_leaf(fn):
        return jax.tree_util.tree_map_with_path(lambda path, _: fn(tuple(k.key for k in path)), params)

    def name_of(p):
        return names[p]

    def wd(p):
        n = name_of(p)
        return weight_decay_value(n, n.rsplit(".", 1)[0] in norm_modules, optim)

    def trainable(p):
        n = name_of(p)
        if n in BUFFERS:
            return False
        return not (config.train.freeze_image_encoder and n.startswith("image_encoder."))

    return {
        "lr_mult": per_leaf(lambda p: lr_multiplier(name_of(p), num_blocks, optim)),
        "vision": per_leaf(lambda p: uses_vision_lr(name_of(p), optim)),
        "weight_decay": per_leaf(wd),
        "trainable": per_leaf(trainable),
    }


def schedule_value(kind: str, where: jax.Array, start: float, end: float, sched: ml_collections.ConfigDict):
    """A schedule at the fraction of training done ``where`` in [0, 1).

    Args:
        kind: ``"cosine"`` (fvcore ``CosineParamScheduler(start, end)``), ``"constant"`` or ``"rsqrt"``.
        where: progress in [0, 1).
        start, end: start and end values (``end`` unused by ``"constant"`` / ``"rsqrt"``).
        sched: ``warmup`` and ``cooldown`` fractions and the ``timescale`` fraction of the rsqrt schedule.

    Returns:
        The value.
    """
    if kind == "constant":
        return jnp.asarray(start, jnp.float32) + 0.0 * where
    if kind == "cosine":
        return end + 0.5 * (start - end) * (1 + jnp.cos(math.pi * where))
    if kind == "rsqrt":
        # Reciprocal square root after the warm-up, scaled to equal `start` when warm-up ends; linear ramps to 0.
        warm, cool, ts = sched.warmup, sched.cooldown, sched.timescale
        value = start * jnp.sqrt((warm + ts) / (jnp.maximum(where, warm) + ts))
        if warm > 0:
            value = value * jnp.minimum(where / warm, 1.0)
        if cool > 0:
            value = value * jnp.minimum((1.0 - where) / cool, 1.0)
        return value
    raise ValueError(f"unknown schedule {kind!r}, expected 'cosine', 'constant' or 'rsqrt'")


def learning_rates(step: jax.Array, optim: ml_collections.ConfigDict, total_steps: int) -> tuple[jax.Array, jax.Array]:
    """(base, vision) learning rates at ``step`` (before layer decay)."""
    where = jnp.minimum(jnp.asarray(step, jnp.float32) / total_steps, 1.0 - 1e-9)
    s = optim.schedule
    base = schedule_value(s.kind, where, optim.base_lr, optim.base_lr * s.end_factor, s)
    vision = schedule_value(s.kind, where, optim.vision_lr, optim.vision_lr * s.end_factor, s)
    return base, vision


def _scale_by_group_lr(
    lr_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]], lr_mult: Any, vision: Any
) -> optax.GradientTransformation:
    """Multiply each update by ``-lr`` of its group at the current step (the count before this update)."""

    def init(params):
        del params
        return {"count": jnp.zeros((), jnp.int32)}

    def update(updates, state, params=None):
        del params
        base, vis = lr_fn(state["count"])
        updates = jax.tree.map(lambda u, m, v: -(vis if v else base) * m * u, updates, lr_mult, vision)
        return updates, {"count": state["count"] + 1}

    return optax.GradientTransformation(init, update)


def make_optimizer(
    params: Mapping, config: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
    """The official AdamW with param groups, schedules and gradient clipping.

    Args:
        params: our param tree (only its structure and names are used).
        config: full config with ``.model`` and ``.train.optim``.
        total_steps: training length, for ``where = step / total_steps``.

    Returns:
        An optax transformation; frozen leaves (buffers, a frozen image encoder) get zero updates.
    """
    optim = config.train.optim
    groups = param_groups(params, config)
    # Frozen leaves: no gradient (so none in the clipping norm) and a zero learning rate (so no weight decay).
    lr_mult = jax.tree.map(lambda m, t: m if t else 0.0, groups["lr_mult"], groups["trainable"])
    return optax.chain(
        _zero_frozen(groups["trainable"]),
        optax.clip_by_global_norm(optim.grad_clip) if optim.grad_clip else optax.identity(),
        optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
        _add_decayed_weights_per_leaf(groups["weight_decay"]),
        _scale_by_group_lr(lambda c: learning_rates(c, optim, total_steps), lr_mult, groups["vision"]),
    )


def _zero_frozen(trainable: Any) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, t: u if t else jnp.zeros_like(u), updates, trainable), state

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


def _add_decayed_weights_per_leaf(weight_decay: Any) -> optax.GradientTransformation:
    """``u + wd * p`` with a per-leaf ``wd`` (decoupled, later scaled by the learning rate as torch's AdamW does)."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("weight decay needs the params")
        return jax.tree.map(lambda u, p, wd: u + wd * p if wd else u, updates, params, weight_decay), state

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)
