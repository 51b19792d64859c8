#!/usr/bin/env bash
# Installs the official PyTorch SAM 2 (sam2==1.1.0) on CPU into an existing venv, for parity tests and benchmarks,
# and transformers (the second reference: its Sam2Model / Sam2VideoModel and their safetensors format).
# Usage: scripts/install_reference.sh VENV_DIR
# torch==2.13.0 is the CPU build on these machines' disk (a plain `pip install torch` pulls a CUDA build: don't).
set -euo pipefail
VENV=${1:?usage: install_reference.sh VENV_DIR}
SHARED=${SAM2_JAX_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
"$VENV/bin/pip" install -q torch==2.13.0 hydra-core iopath
# sam2 is an sdist: no CUDA extension, no build isolation (else pip installs torch again in a build env)
SAM2_BUILD_CUDA=0 "$VENV/bin/pip" install -q --no-deps --no-build-isolation sam2==1.1.0
# Pure python; the version tests/convert_weights/test_hf_format.py was checked against.
"$VENV/bin/pip" install -q transformers==5.24.0
# PyPI's torchvision cannot load beside torch 2.13.0+cpu; use the shared pure-torch stand-in when present.
if [ -d "$SHARED/reference/tvshim" ]; then
  site=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  echo "$SHARED/reference/tvshim" > "$site/zz_sam2_tvshim.pth"
fi
"$VENV/bin/python" -c 'import sam2, torch; print("reference ready: torch", torch.__version__)'
