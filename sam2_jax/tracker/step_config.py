"""The static choices of a tracking step, in one hashable object (a static argument of every compiled step)."""

import dataclasses

from sam2_jax.tracker.policies import SAM2, TrackerPolicy


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What a driver fixes for a whole run (each distinct value compiles its own step).

    Attributes:
      policy: the tracking policy (``tracker/policies/``).
      fill_hole_area: the predictor's ``fill_hole_area``, applied to the returned low-res masks.
      compact: attend only to the memory slots in use (``memory.condition_on_memory``); the predictors' steps
        compact, the exported and ONNX graphs and training do not.
      deterministic: dropout and drop path off (inference); training runs with False and a ``{"dropout": key}``.
    """

    policy: TrackerPolicy = SAM2
    fill_hole_area: int = 0
    compact: bool = False
    deterministic: bool = True


DEFAULT = StepConfig()
