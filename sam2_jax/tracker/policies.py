"""Tracking policies: which candidate mask a tracked frame keeps and which frames enter the recent-memory ring.

The same weights, the same per-frame engine (``engine.py``); a policy is a static argument of its functions, so each
policy compiles its own step and nothing branches on data.

- ``sam2`` (default): the official SAM 2.1 rule: the best-IoU candidate; the ring holds frames t-1 … t-6 and the
  pointer ring frames t-1 … t-15, whatever happened in them.
- ``samurai`` (Yang et al., arXiv 2411.11922; github ``yangchris11/samurai``, Apache-2.0,
  ``sam2/sam2/modeling/sam2_base.py``, ``configs/samurai/*.yaml``): a Kalman filter on each object's box
  (``kalman.py``); once it is stable the candidate maximises ``w * KalmanIoU + (1 - w) * predicted IoU``; a frame
  enters the memory ring only when its predicted IoU, object score and Kalman IoU pass thresholds. The ring holds
  the last ``num_maskmem - 1`` entries of [admitted frames ..., t-1] (t-1 always attends, as in the reference);
  temporal encodings follow the rank in that list. Object pointers keep the SAM 2 rule.
- ``sam3_selection`` (github ``facebookresearch/sam3``, ``sam3/model/sam3_tracker_base.py``: ``cal_mem_score``,
  ``frame_filter``): a frame is admitted when ``mean(norm(object score) * predicted IoU) > mf_threshold``; both the
  memory ring and the pointer ring hold the admitted frames (+ t-1), with rank-based temporal positions.
- ``sam2long`` (Ding et al., arXiv 2410.16268; github ``Mark12Ding/SAM2Long``, CC-BY-NC: its code was run as a
  reference, not copied): ``num_pathways`` memory pathways per object (rows of the state, ``engine.sam2long_step``);
  each frame keeps P of the P x 3 candidates by cumulative log-IoU, or SAM2Long's diverse rule when every pathway's
  |object score| <= ``sam2long_uncertainty`` (``engine.sam2long_select``); a frame enters a pathway's rings when its
  IoU > ``sam2long_iou_threshold`` and its object score > 0 (the rings then hold the admitted frames + t-1, masks and
  pointers, as SAM 3's); memory-attention keys weighted by the rank of each memory's object score
  (``engine.sam2long_key_weights``). Defaults from ``tools/vos_inference.py``: P = 3, IoU 0.1, uncertainty 2.

Deviations from the references (documented in README "Tracking policies"):
- The references keep one Kalman filter on the model (SAMURAI tracks one object); ours is per object, batched.
- SAM 3's frame score averages over the batch of objects; ours is per object (equal for one object).
- The Kalman state and the admission count restart when a propagation starts (a new ``propagate_in_video`` call or
  a stream rebuilt after a prompt); the references keep the filter across calls. The admitted ring is rebuilt from
  the stored per-frame admission flags.
- The Kalman filter starts on the first tracked frame. SAMURAI prompts with a box (one mask, no filter step on the
  prompted frame), where this equals the reference; after a single click (three candidate masks) the reference
  already initialises it on the prompted frame, one frame earlier.
- Reverse tracking: SAMURAI's selection only looks backwards in frame index (undefined in reverse); ours mirrors it in
  the tracking direction, and the "frames 0 and 1 are never admitted" bound of its loop applies forward only.
- SAM2Long (one object, one conditioning frame, forward in the reference): objects are independent rows; every
  conditioning frame weighs as its one conditioning frame (score 10); the frame after any conditioning frame runs
  as a single pathway (pathway 0's best-IoU candidate, scores back to 0), as the reference's ``start_frame_idx + 1``;
  reverse mirrors the rules; a resumed pass starts from P equal pathways rebuilt from the stored best outputs.
  Scores are float32 and ``round(iou, 2)`` is ``round(100 iou)`` in float32 (the reference: Python floats).
"""

import dataclasses

import ml_collections

POLICIES = ("sam2", "samurai", "sam3_selection", "sam2long")


@dataclasses.dataclass(frozen=True)
class TrackerPolicy:
    """A tracking policy with its thresholds (hashable: a static argument of the compiled step).

    Attributes:
      name: one of ``POLICIES``.
      stable_frames_threshold, stable_ious_threshold, min_obj_score_logits, kf_score_weight,
      memory_bank_iou_threshold, memory_bank_obj_score_threshold, memory_bank_kf_score_threshold: SAMURAI's fields,
        defaults from ``configs/samurai/sam2.1_hiera_*.yaml``.
      samurai_admit_from_frame: the reference's selection loop (``range(frame_idx - 1, 1, -1)``) never admits frames
        0 and 1 (forward tracking).
      mf_threshold: SAM 3's memory-selection threshold (``Sam3TrackerBase(mf_threshold=0.01)``).
      num_pathways, sam2long_iou_threshold, sam2long_uncertainty: SAM2Long's ``num_pathway``, ``iou_thre`` and
        ``uncertainty`` (defaults of its ``tools/vos_inference.py``: 3, 0.1, 2).
    """

    name: str = "sam2"
    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    min_obj_score_logits: float = -1.0
    kf_score_weight: float = 0.25
    memory_bank_iou_threshold: float = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float = 0.0
    samurai_admit_from_frame: int = 2
    mf_threshold: float = 0.01
    num_pathways: int = 3
    sam2long_iou_threshold: float = 0.1
    sam2long_uncertainty: float = 2.0

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"tracker policy must be one of {POLICIES}, got {self.name!r}")
        if self.name == "sam2long" and self.num_pathways < 1:
            raise ValueError(f"num_pathways must be >= 1, got {self.num_pathways}")

    @property
    def selects_memory(self) -> bool:
        """Whether the recent-memory ring holds admitted frames (by rank) instead of the last frames (by index)."""
        return self.name in ("samurai", "sam3_selection", "sam2long")

    @property
    def selects_pointers(self) -> bool:
        """Whether the pointer ring holds admitted frames too (SAM 3, SAM2Long)."""
        return self.name in ("sam3_selection", "sam2long")

    @property
    def obj_score_threshold(self) -> float:
        """The object-score logit above which a mask counts as present in the heads (SAMURAI: -1; SAM 2: 0)."""
        return self.min_obj_score_logits if self.name == "samurai" else 0.0


SAM2 = TrackerPolicy()


def policy_config() -> ml_collections.ConfigDict:
    """The ``tracker`` section of a model config: ``policy`` and every threshold (``TrackerPolicy``'s fields)."""
    fields = {f.name: f.default for f in dataclasses.fields(TrackerPolicy)}
    fields["policy"] = fields.pop("name")
    return ml_collections.ConfigDict(fields)


def get_policy(policy=None, config: ml_collections.ConfigDict | None = None) -> TrackerPolicy:
    """A ``TrackerPolicy`` from a name, a ``TrackerPolicy``, or a config's ``tracker`` section (the name, when given,
    overrides the config's ``policy``; thresholds come from the config)."""
    if isinstance(policy, TrackerPolicy):
        return policy
    fields = {}
    if config is not None:
        fields = dict(config.to_dict() if hasattr(config, "to_dict") else config)
        fields["name"] = fields.pop("policy", "sam2")
    if policy is not None:
        if not isinstance(policy, str):
            raise ValueError(f"tracker_policy must be a name or a TrackerPolicy, got {policy!r}")
        fields["name"] = policy
    return TrackerPolicy(**fields)
