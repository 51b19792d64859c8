#!/usr/bin/env bash
# Installs the ONNX tools (sam2_jax.export.onnx_export, sam2_jax.export.onnx_runtime and their parity test in
# tests/test_exported.py)
# into an existing venv that already has sam2-jax (jax, flax).
# Usage: scripts/install_onnx.sh VENV_DIR
# jax2onnx 0.17.1 requires orbax-checkpoint<0.11.37 (we use 0.12.8) and pulls equinox, dm-pix, netron, orbax-export
# that our graphs never import, so it goes in with --no-deps; onnx, onnx-ir and onnxruntime are all it needs beside
# jax and flax (checked by converting and running a graph in a fresh venv), installed with their own dependencies.
set -euo pipefail
VENV=${1:?usage: install_onnx.sh VENV_DIR}
"$VENV/bin/pip" install -q onnx==1.23.2 onnx-ir==1.1.0 onnxruntime==1.32.0
"$VENV/bin/pip" install -q --no-deps jax2onnx==0.17.1
"$VENV/bin/python" -c 'import jax2onnx, onnxruntime; print("onnx tools ready: onnxruntime", onnxruntime.__version__)'
