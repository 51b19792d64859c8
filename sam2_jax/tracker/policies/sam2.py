"""``sam2`` (default): the official SAM 2.1 rule.

The best-IoU candidate; the recent-memory ring holds frames t-1 … t-6 and the pointer ring frames t-1 … t-15,
whatever happened in them. Every hook is ``TrackerPolicy``'s default.
"""

import dataclasses
from typing import ClassVar

from sam2_jax.tracker.policies.base import TrackerPolicy


@dataclasses.dataclass(frozen=True)
class SAM2Policy(TrackerPolicy):
    """The official tracking rule (no thresholds)."""

    name: ClassVar[str] = "sam2"


POLICY = SAM2Policy
