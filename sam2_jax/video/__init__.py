"""The video predictor's host side, behind the official facade ``sam2_jax/sam2_video_predictor.py``.

Frames (``video_io``), the typed inference state and its budgeted output store (``video_state``). This file imports
nothing, so that a module here never loads the facade or its siblings by accident (``tests/test_import_graph.py``).
"""
