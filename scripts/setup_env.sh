#!/usr/bin/env bash
# Creates .venv with sam2-jax (editable) and its test tools (pytest, ruff, playwright, IREE; the ONNX extra and
# jax2onnx for the ONNX test); with --reference also the PyTorch reference (torch==2.13.0 CPU, sam2==1.1.0, transformers) for the
# parity tests, and Debian's Chromium for the browser test where it is missing. sam2-jax itself needs no torch:
# official .pt checkpoints are read without it.
# Idempotent: re-running on an existing .venv only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "${1:-}" = "--reference" ]; then
  # torch first, pinned to the CPU build on disk, so nothing later pulls a CUDA build.
  .venv/bin/pip install -q torch==2.13.0
fi
.venv/bin/pip install -q -e ".[test,onnx]"
# jax2onnx without its dependencies (pyproject.toml, the onnx extra, says why)
.venv/bin/pip install -q --no-deps jax2onnx==0.17.1
if [ "${1:-}" = "--reference" ]; then
  scripts/install_reference.sh .venv
fi
if [ "${1:-}" = "--reference" ] && ! command -v chromium >/dev/null 2>&1; then
  # Debian's Chromium for the browser test of `sam2-jax serve` (tests/test_serve_browser.py; playwright, from the
  # test extra, drives it and downloads no browser of its own). Needs root and Debian's package registry.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup_env.sh: could not install chromium; the browser test will skip" >&2
  else
    echo "setup_env.sh: no chromium and no root apt-get; install Debian's chromium for the browser test" >&2
  fi
fi
