"""The tracker's compiled entry points.

The package's one jit-caching policy: module-level ``jax.jit`` with the Flax module and the ``StepConfig`` as static
arguments (both hashable: a module by its frozen config and dtype, a step config by its fields), so every
predictor, evaluator and benchmark built on the same model shares one compile per shape.
"""

import functools

import jax

from sam2_jax.modeling.backend import VIDEO_AXIS
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.tracker import calls, engine
from sam2_jax.tracker.state import TrackerState
from sam2_jax.tracker.step_config import DEFAULT, StepConfig

# ``engine.scan_frames`` of one video; the predictors pass ``StepConfig(compact=True)``.
propagate_chunk = jax.jit(engine.scan_frames, static_argnames=("module", "cfg"), donate_argnames=("state",))


@functools.partial(jax.jit, static_argnames=("module", "cfg"), donate_argnames=("state",))
def propagate_videos_chunk(
    module: SAM2Base,
    params,
    state: TrackerState,
    images: jax.Array,
    frame_idxs: jax.Array,
    reverse: jax.Array,
    cfg: StepConfig = DEFAULT,
) -> tuple[TrackerState, engine.StepOutput]:
    """``engine.scan_frames`` of several videos at once, in one program (the official code tracks one video at a
    time, upstream #399): every argument but ``params`` has a leading video axis V.

    Args:
      state: ``TrackerState`` (V, O, …) (``stack_states``: the same object and slot counts in every video).
      images: (V, T, S, S, 3) normalised frames. frame_idxs: (V, T) int. reverse: (V,) bool.
    Returns:
      the state (V, O, …) and ``StepOutput`` stacked (V, T, O, …).
    """
    one = lambda st, im, ix, rv: engine.scan_frames(module, params, st, im, ix, rv, cfg)
    return jax.vmap(one, axis_name=VIDEO_AXIS)(state, images, frame_idxs, reverse)


jit_image_embeddings = jax.jit(calls.image_embeddings, static_argnums=0)
jit_frame_features = jax.jit(calls.frame_features, static_argnums=0, static_argnames=("deterministic",))
jit_interact = jax.jit(engine.interact, static_argnums=0, static_argnames=("is_init_cond_frame", "cfg"))
jit_encode_prompt_memory = jax.jit(engine.encode_prompt_memory, static_argnums=0)
