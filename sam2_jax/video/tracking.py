"""What the video predictor's host-side code needs of it: the model, the policy and the options that change what a
propagation computes, gathered into one typed value (``Tracking``) instead of the predictor object itself.

The predictor builds a ``Tracking`` from its attributes at the start of each call, so an option set after
construction (``predictor.fill_hole_area = 0``, as the reference scripts do) takes effect as it did before the
split; the modules of this package read nothing else of the predictor, and never import it.
"""

from typing import Any, NamedTuple

import jax
import ml_collections

from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.tracker.policies import TrackerPolicy
from sam2_jax.tracker.state import TrackerState
from sam2_jax.tracker.step_config import StepConfig


class Tracking(NamedTuple):
    """The device side of a video predictor, as the host code of ``sam2_jax/video/`` calls it."""

    module: SAM2Base  # static argument of the engine's jitted programs (one compile per model)
    params: Any
    config: ml_collections.ConfigDict  # the model section of the config (slot counts, image size)
    policy: TrackerPolicy
    fill_hole_area: int
    non_overlap_masks: bool
    max_cond_slots: int  # most conditioning frames attended to per object
    mesh: jax.sharding.Mesh | None  # with an "obj" axis, or None on one device

    @property
    def step_config(self) -> StepConfig:
        """The static choices of the propagation step: the policy, hole filling, the memory slots in use only."""
        return StepConfig(self.policy, self.fill_hole_area, compact=True)

    def shard(self, tstate: TrackerState) -> TrackerState:
        """Spread the object axis of the state over ``self.mesh`` (params and frames stay replicated); the object
        count must divide over the devices, else the state is replicated. Results do not depend on it."""
        if self.mesh is None:
            return tstate
        n = self.mesh.devices.size
        spec = jax.sharding.PartitionSpec("obj") if tstate.num_objects % n == 0 else jax.sharding.PartitionSpec()
        sharded = jax.sharding.NamedSharding(self.mesh, spec)
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        return jax.tree.map(lambda x: jax.device_put(x, sharded if x.ndim else replicated), tstate)
