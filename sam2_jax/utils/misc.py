"""Port of the mask utilities in ``sam2/utils/misc.py``: connected components, hole filling, mask boxes.

Deviations:
- ``get_connected_components`` is pure JAX (the official one calls the CUDA extension ``sam2._C``, whose
  kernel in ``sam2/csrc/connected_components.cu`` labels 8-connected foreground components). Labels are
  consistent component ids in ``1..H*W`` (the component's smallest flat pixel index, plus one); the official
  ids are arbitrary too. Any leading shape is accepted: the last two axes are ``(H, W)``.
- ``fill_holes_in_mask_scores`` never skips: the official one catches the missing-extension error and returns
  the mask unchanged on CPU, which is why the CPU reference behaves as if hole filling were off.
- ``remove_small_regions`` is the hole-filling / sprinkle-removal block of
  ``SAM2Transforms.postprocess_masks`` (``sam2/utils/transforms.py``), factored out so the transforms and the
  predictors share it; both kinds of region are labelled in one pass.
- The video frame loaders of the official file live with the video predictor, not here.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _neighbours(x: jax.Array, fill) -> jax.Array:
    """``(N, H, W) -> (8, N, H, W)``: each pixel's 8 neighbours, ``fill`` outside the image."""
    _, h, w = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    return jnp.stack([xp[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _OFFSETS])


def _component_roots(cls: jax.Array, active: jax.Array) -> jax.Array:
    """Flat index of each pixel's component root; pixels join when both are active and of the same class.

    ``cls``/``active``: ``(N, H, W)``. Runs a hook-and-compress union-find (Shiloach-Vishkin style): every
    round each tree root takes the smallest root among its pixels' 8 neighbours, then pointer jumping flattens
    the trees. Each round at least halves the number of trees per component (only local minima stay roots), so
    a component needs O(log area) rounds whatever its shape (a min-label flood fill needs as many rounds as
    the component's diameter, thousands for a spiral on 256x256).
    """
    n, h, w = cls.shape
    size = n * h * w
    big = jnp.int32(size)
    flat_idx = jnp.arange(size, dtype=jnp.int32)
    # Which neighbours each pixel connects to, computed once: (8, N, H, W) bool.
    links = active & _neighbours(active, False) & (cls == _neighbours(cls, cls.dtype.type(0)))

    def compress(parent: jax.Array) -> jax.Array:
        def body(state):
            p, _ = state
            pp = p[p]
            return pp, jnp.any(pp != p)

        return lax.while_loop(lambda s: s[1], body, (parent, jnp.bool_(True)))[0]

    def round_(state):
        parent, _ = state
        lab = parent.reshape(n, h, w)  # (N*H*W,) -> (N, H, W)
        nb_min = jnp.where(links, _neighbours(lab, big), big).min(axis=0)
        nb_min = jnp.minimum(lab, nb_min).reshape(-1)  # (N, H, W) -> (N*H*W,)
        # Hook each pixel's root (and the pixel itself) onto the smallest neighbouring root: parents only
        # decrease and always stay inside the true component.
        new = parent.at[parent].min(nb_min)
        new = compress(jnp.minimum(new, nb_min))
        return new, jnp.any(new != parent)

    parent, _ = lax.while_loop(lambda s: s[1], round_, (flat_idx, jnp.bool_(True)))
    return parent.reshape(n, h, w)  # (N*H*W,) -> (N, H, W)


def _labels_and_areas(roots: jax.Array, member: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-image labels ``root % (H*W) + 1`` and component areas for the ``member`` pixels, 0 elsewhere."""
    n, h, w = roots.shape
    flat = roots.reshape(-1)  # (N, H, W) -> (N*H*W,)
    areas = jnp.zeros(flat.shape, jnp.int32).at[flat].add(member.reshape(-1).astype(jnp.int32))
    counts = jnp.where(member, areas[flat].reshape(n, h, w), 0)
    labels = jnp.where(member, roots % (h * w) + 1, 0)
    return labels.astype(jnp.int32), counts.astype(jnp.int32)


def _check_spatial(x: jax.Array, name: str) -> None:
    if x.ndim < 2 or min(x.shape[-2:]) < 1:
        raise ValueError(f"{name} must have shape (..., H, W) with H, W >= 1, got {x.shape}")


@jax.jit
def get_connected_components(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """8-connected components of binary masks, like the official CUDA ``get_connected_components``.

    Args:
      mask: ``(..., H, W)`` (officially ``(N, 1, H, W)``), nonzero is foreground.

    Returns:
      ``(labels, counts)``, both int32 of ``mask``'s shape: for foreground pixels a component id (>= 1, equal
      within a component, distinct across components of one image) and the component's area; 0 on background.
    """
    mask = jnp.asarray(mask)
    _check_spatial(mask, "mask")
    shape = mask.shape
    fg = (mask != 0).reshape(-1, *shape[-2:])  # (..., H, W) -> (N, H, W)
    roots = _component_roots(fg, fg)
    labels, counts = _labels_and_areas(roots, fg)
    return labels.reshape(shape), counts.reshape(shape)


def _check_area(max_area, name: str) -> None:
    if isinstance(max_area, (int, float)) and max_area <= 0:
        raise ValueError(f"{name} must be positive, got {max_area}")


@functools.partial(jax.jit, static_argnames=("max_area",))
def fill_holes_in_mask_scores(mask: jax.Array, max_area: int | float) -> jax.Array:
    """Raise to 0.1 the scores of background regions (score <= 0) of area <= ``max_area``.

    As in the official code, a "hole" is any 8-connected background component that small, including ones
    touching the image border.

    Args:
      mask: ``(..., H, W)`` mask logits (officially ``(B, 1, H, W)``).
      max_area: largest area (pixels) of a background component to fill; must be positive.

    Returns:
      the filled scores, same shape and dtype as ``mask``.
    """
    _check_area(max_area, "max_area")
    mask = jnp.asarray(mask)
    _check_spatial(mask, "mask")
    labels, areas = get_connected_components(mask <= 0)
    is_hole = (labels > 0) & (areas <= max_area)
    return jnp.where(is_hole, jnp.asarray(0.1, mask.dtype), mask)


@functools.partial(jax.jit, static_argnames=("mask_threshold", "max_hole_area", "max_sprinkle_area"))
def remove_small_regions(
    masks: jax.Array,
    mask_threshold: float,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
) -> jax.Array:
    """Fill small holes and drop small sprinkles, as ``SAM2Transforms.postprocess_masks`` does.

    Holes are 8-connected components of ``masks <= mask_threshold`` with area <= ``max_hole_area``; their
    scores become ``mask_threshold + 10``. Sprinkles are components of ``masks > mask_threshold`` with area <=
    ``max_sprinkle_area``; their scores become ``mask_threshold - 10``. Both sets of components are taken from
    the input scores (the official code labels sprinkles on the masks before hole filling), and each part is
    skipped when its area is 0.

    Args:
      masks: ``(..., H, W)`` mask logits.
      mask_threshold: the score above which a pixel is foreground.
      max_hole_area, max_sprinkle_area: area limits (pixels); <= 0 turns the step off.

    Returns:
      float32 scores of ``masks``'s shape.
    """
    masks = jnp.asarray(masks, jnp.float32)
    _check_spatial(masks, "masks")
    if max_hole_area <= 0 and max_sprinkle_area <= 0:
        return masks
    shape = masks.shape
    fg = (masks > mask_threshold).reshape(-1, *shape[-2:])  # (..., H, W) -> (N, H, W)
    # Foreground and background components in one labelling: pixels connect when they share a class.
    roots = _component_roots(fg, jnp.ones_like(fg))
    _, fg_areas = _labels_and_areas(roots, fg)
    _, bg_areas = _labels_and_areas(roots, ~fg)
    out = masks.reshape(fg.shape)
    if max_hole_area > 0:
        out = jnp.where(~fg & (bg_areas <= max_hole_area), mask_threshold + 10.0, out)
    if max_sprinkle_area > 0:
        out = jnp.where(fg & (fg_areas <= max_sprinkle_area), mask_threshold - 10.0, out)
    return out.reshape(shape)


@jax.jit
def mask_to_box(masks: jax.Array) -> jax.Array:
    """Bounding boxes ``(x0, y0, x1, y1)`` (inclusive pixel corners) of boolean masks.

    Args:
      masks: ``(..., H, W)`` boolean (officially ``(B, 1, H, W)``).

    Returns:
      ``(..., 4)`` int32; an empty mask gives ``(W, H, -1, -1)`` as in the official code.
    """
    masks = jnp.asarray(masks).astype(bool)
    _check_spatial(masks, "masks")
    h, w = masks.shape[-2:]
    xs = jnp.arange(w, dtype=jnp.int32)
    ys = jnp.arange(h, dtype=jnp.int32)[:, None]
    min_x = jnp.min(jnp.where(masks, xs, w), axis=(-2, -1))
    max_x = jnp.max(jnp.where(masks, xs, -1), axis=(-2, -1))
    min_y = jnp.min(jnp.where(masks, ys, h), axis=(-2, -1))
    max_y = jnp.max(jnp.where(masks, ys, -1), axis=(-2, -1))
    return jnp.stack([min_x, min_y, max_x, max_y], axis=-1).astype(jnp.int32)
