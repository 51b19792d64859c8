"""Deployment: the model as files that run without it.

- ``stablehlo``: write a StableHLO export (``jax.export``, every platform in one artifact) of the engine's
  per-frame functions; ``runtime``: run one with ``jax`` and ``numpy`` only (``ExportedImagePredictor``,
  ``ExportedVideoPredictor``), no Flax and no model code.
- ``onnx_export``: write the ONNX graphs (through ``jax2onnx``); ``onnx_runtime``: track a video with them on
  ``onnxruntime`` and ``numpy`` alone.
- ``names``: the file, manifest and function names both sides read, written once.

This file imports nothing, so that importing a runtime does not load a writer (and with it Flax).
"""
