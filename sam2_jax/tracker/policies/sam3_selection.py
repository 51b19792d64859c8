"""``sam3_selection``: SAM 3's memory selection (github ``facebookresearch/sam3``,
``sam3/model/sam3_tracker_base.py``: ``cal_mem_score``, ``frame_filter``).

A frame is admitted when ``mean(norm(object score) * predicted IoU) > mf_threshold``; both the memory ring and the
pointer ring hold the admitted frames (+ t-1), with rank-based temporal positions.

Deviation: SAM 3's frame score averages over the batch of objects; ours is per object (equal for one object).
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from sam2_jax.tracker.policies.base import Admission, AdmittedMemoryAndPointers


@dataclasses.dataclass(frozen=True)
class Sam3SelectionPolicy(AdmittedMemoryAndPointers):
    """Attributes:
    mf_threshold: SAM 3's memory-selection threshold (``Sam3TrackerBase(mf_threshold=0.01)``).
    """

    name: ClassVar[str] = "sam3_selection"
    mf_threshold: float = 0.01

    def admit(self, state, heads, t, reverse, is_cond) -> Admission:
        """``cal_mem_score`` = norm(object score) * max predicted IoU > ``mf_threshold``, norm(s) = 2 sigmoid(s) - 1
        where s > 0 else 0; frame 0 never (forward), as ``frame_filter``'s range."""
        adm = super().admit(state, heads, t, reverse, is_cond)
        obj = heads.object_score_logits[:, 0]
        norm = jnp.where(obj > 0, jax.nn.sigmoid(obj) * 2 - 1, 0.0)
        admitted = adm.admitted & (norm * adm.best_iou > self.mf_threshold) & (reverse | (t >= 1))
        return adm._replace(admitted=admitted)


POLICY = Sam3SelectionPolicy
