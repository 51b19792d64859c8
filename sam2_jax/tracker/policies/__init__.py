"""Tracking policies: which candidate mask a tracked frame keeps and which frames enter the memory rings.

The same weights, the same per-frame engine (``tracker/engine.py``); a policy is a frozen dataclass whose hooks the
engine calls (``base.py``), carried in the static ``StepConfig`` of the compiled step, so each policy compiles its
own step and nothing branches on data or on a policy's name. One module per policy, named as the policy:

- ``sam2`` (default): the official SAM 2.1 rule.
- ``samurai``: SAMURAI's Kalman-filtered choice and memory admission.
- ``sam3_selection``: SAM 3's memory selection.
- ``sam2long``: SAM2Long's memory pathways.

**To add a policy**, add one module here that defines a frozen dataclass subclass of ``base.TrackerPolicy`` (its
thresholds are its fields, with defaults) and names it ``POLICY``; the registry finds the module by its file name,
the model configs' ``tracker`` section gains its fields, and ``eval.py --tracker`` / ``sam2-jax video --tracker``
offer it. Nothing else is edited.

Deviations shared by the policies (documented in README "Tracking policies"): the per-policy state (SAMURAI's
Kalman filter, the admission count, SAM2Long's pathways) restarts when a propagation starts (a new
``propagate_in_video`` call or a stream rebuilt after a prompt); the references keep it across calls. The admitted
rings are rebuilt from the stored per-frame admission flags.
"""

import dataclasses
import importlib
import pkgutil

import ml_collections

from sam2_jax.tracker.policies.base import TrackerPolicy
from sam2_jax.tracker.policies.sam2 import SAM2Policy

# The registry: every module of this package but ``base``, ``sam2`` first. Names only; a policy's module is imported
# when it is asked for (``policy_class``), so the engine can import this package and SAM2Long's module the engine.
POLICIES = ("sam2",) + tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "sam2") and not m.ispkg)
)

SAM2 = SAM2Policy()


def policy_class(name: str) -> type[TrackerPolicy]:
    """The policy class registered as ``name`` (its module's ``POLICY``)."""
    if name not in POLICIES:
        raise ValueError(f"tracker policy must be one of {POLICIES}, got {name!r}")
    cls = importlib.import_module(f"{__name__}.{name}").POLICY
    if cls.name != name:
        raise ValueError(f"policy module {name!r} defines a policy named {cls.name!r}")
    return cls


def policy_config() -> ml_collections.ConfigDict:
    """The ``tracker`` section of a model config: ``policy`` (the name) and every policy's thresholds (the fields of
    each registered policy, with their defaults; a field two policies share must have one default)."""
    fields = {"policy": "sam2"}
    for name in POLICIES:
        for f in dataclasses.fields(policy_class(name)):
            if fields.setdefault(f.name, f.default) != f.default:
                raise ValueError(f"tracker field {f.name!r} has two defaults across the policies")
    return ml_collections.ConfigDict(fields)


def get_policy(policy=None, config: ml_collections.ConfigDict | None = None) -> TrackerPolicy:
    """A policy from a name, a ``TrackerPolicy``, or a config's ``tracker`` section (the name, when given,
    overrides the config's ``policy``; thresholds come from the config)."""
    if isinstance(policy, TrackerPolicy):
        return policy
    fields = {}
    if config is not None:
        fields = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    name = fields.pop("policy", "sam2")
    if policy is not None:
        if not isinstance(policy, str):
            raise ValueError(f"tracker_policy must be a name or a TrackerPolicy, got {policy!r}")
        name = policy
    cls = policy_class(name)
    own = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in own})
