"""The video predictor's host side, behind the official facade ``sam2_jax/sam2_video_predictor.py``.

- ``video_io``: frame sources; ``video_state``: the typed inference state and its budgeted output store.
- ``pipeline``: a chunk through the device and back, the same host code for one video and for a batch;
  ``scheduler``: continuous batching of many videos; ``streaming``: a frame in, masks out.
- ``tracker_state``: the device ``TrackerState`` built from the host store; ``tracking``: what this package reads of
  the predictor (the policies' host-side memory is theirs: ``sam2_jax/tracker/policies/``).
- ``prompts``, ``options``: a frame's prompt checked; the builders' options split.

This file imports nothing, so that importing one module here never loads its siblings or the facade (no cycle:
``tests/test_import_graph.py``).
"""
