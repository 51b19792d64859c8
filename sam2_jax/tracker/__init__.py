"""The video tracker: a fixed-size memory state and a pure per-frame step (tracking policy, not model)."""
