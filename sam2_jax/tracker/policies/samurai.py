"""``samurai``: SAMURAI (Yang et al., arXiv 2411.11922; github ``yangchris11/samurai``, Apache-2.0,
``sam2/sam2/modeling/sam2_base.py``, ``configs/samurai/*.yaml``).

A Kalman filter on each object's box (``tracker/kalman.py``); once it is stable the candidate maximises
``w * KalmanIoU + (1 - w) * predicted IoU``; a frame enters the memory ring only when its predicted IoU, object
score and Kalman IoU pass thresholds. The ring holds the last ``num_maskmem - 1`` entries of [admitted frames …,
t-1] (t-1 always attends, as in the reference); temporal encodings follow the rank in that list. Object pointers
keep the SAM 2 rule.

Deviations:
- The reference keeps one Kalman filter on the model (SAMURAI tracks one object); ours is per object, batched.
- The filter starts on the first tracked frame. SAMURAI prompts with a box (one mask, no filter step on the
  prompted frame), where this equals the reference; after a single click (three candidate masks) the reference
  already initialises it on the prompted frame, one frame earlier.
- Reverse tracking: SAMURAI's selection only looks backwards in frame index (undefined in reverse); ours mirrors it
  in the tracking direction, and the "frames 0 and 1 are never admitted" bound of its loop applies forward only.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from sam2_jax.tracker import kalman
from sam2_jax.tracker.policies.base import Admission, AdmittedMemory


@dataclasses.dataclass(frozen=True)
class SamuraiPolicy(AdmittedMemory):
    """SAMURAI's thresholds, defaults from ``configs/samurai/sam2.1_hiera_*.yaml``.

    Attributes:
      stable_frames_threshold, stable_ious_threshold, min_obj_score_logits, kf_score_weight,
      memory_bank_iou_threshold, memory_bank_obj_score_threshold, memory_bank_kf_score_threshold: its fields.
      samurai_admit_from_frame: the reference's selection loop (``range(frame_idx - 1, 1, -1)``) never admits frames
        0 and 1 (forward tracking).
    """

    name: ClassVar[str] = "samurai"
    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    min_obj_score_logits: float = -1.0
    kf_score_weight: float = 0.25
    memory_bank_iou_threshold: float = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float = 0.0
    samurai_admit_from_frame: int = 2

    @property
    def obj_score_threshold(self) -> float:
        return self.min_obj_score_logits

    def check(self, module) -> None:
        if not module.use_multimask(is_init_cond_frame=False, num_pts=0):
            raise ValueError("the samurai policy needs multimask_output_for_tracking=True (its Kalman choice)")

    def choose(self, module, state):
        """The candidate the Kalman filter chooses (``kalman.samurai_choice``)."""
        self.check(module)
        kf = kalman.KalmanState(state.kf_mean, state.kf_cov, state.kf_stable)
        return lambda ious, masks: kalman.samurai_choice(kf, ious, masks, self).best

    def admit(self, state, heads, t, reverse, is_cond) -> Admission:
        """Predicted IoU of the kept mask > ``memory_bank_iou_threshold``, object score >
        ``memory_bank_obj_score_threshold`` and, in the filter's stable phase, its Kalman IoU >
        ``memory_bank_kf_score_threshold``; frames before ``samurai_admit_from_frame`` never (forward)."""
        kf = kalman.KalmanState(state.kf_mean, state.kf_cov, state.kf_stable)
        obj = heads.object_score_logits[:, 0]
        choice = kalman.samurai_choice(kf, heads.ious, heads.high_res_multimasks, self)
        best_iou = jnp.take_along_axis(heads.ious, choice.best[:, None], 1)[:, 0]
        kf_ok = ~choice.kf_scored | (choice.kf_score > self.memory_bank_kf_score_threshold)
        kf_score = jnp.where(choice.kf_scored, choice.kf_score, jnp.nan)
        admitted = ~is_cond
        admitted &= (best_iou > self.memory_bank_iou_threshold) & (obj > self.memory_bank_obj_score_threshold)
        admitted &= kf_ok & (reverse | (t >= self.samurai_admit_from_frame))
        # the reference's filter only steps on frames it decodes (a conditioning frame reuses its stored output)
        per_object = lambda a, b: jnp.where(is_cond.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        return Admission(admitted, best_iou, jax.tree.map(per_object, kf, choice.kalman), kf_score)

    def after_frame(self, state, adm):
        return state.replace(kf_mean=adm.kalman.mean, kf_cov=adm.kalman.cov, kf_stable=adm.kalman.stable)

    def kf_box(self, state):
        return kalman.xyah_to_xyxy(state.kf_mean)


POLICY = SamuraiPolicy
