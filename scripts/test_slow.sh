#!/usr/bin/env bash
# The slow tier in four parts that each fit one sitting on 2 cores and 23 GB, each with its pytest log, JUnit file
# (a result and a time per test) and measured errors (tests/measured.py) under OUTDIR. The parts together select
# every slow-marked test once.
#   training  tests/training                                         one worker: 34 min
#   tools     converter, HF format, evaluation, eval.py, no-torch,   one worker: 11 min
#             compile budget and cache, bad input, AMG m2m
#   video     video predictor, tracker, policies, video recorder    one worker: about 45 min
#   export    exports, export platforms, install, image encoders,   one worker: about 45 min
#             notebook ports, mask generator
# (Intel Xeon, AVX-512, 2 cores, 2026-12-06; video and export: sums of runs made apart, two of them side by side.)
# Every part runs on one worker: two slow tests side by side went past 23 GB and a worker was OOM-killed.
# Usage: scripts/test_slow.sh [OUTDIR] [PART ...]   (OUTDIR default /tmp/sam2_jax_slow; every part by default)
# The live DAVIS and SA-V comparisons (tools part) need DAVIS2017_EVALUATION_ROOT and SAV_BENCHMARK_PY (README).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sam2_jax_slow}
shift || true
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(training tools video export)
mkdir -p "$out"
export SAM2_JAX_SLOW=1 SAM2_JAX_REQUIRE_REFERENCE=1
status=0
for part in "${parts[@]}"; do
  case $part in
    training) args=(tests/training) ;;
    tools) args=(tests/convert_weights tests/evaluation tests/test_eval.py tests/test_without_torch.py
                 tests/test_compile_budget.py tests/utils tests/test_bad_input.py
                 "tests/test_automatic_mask_generator.py::test_parity_with_official_more[groceries-m2m]") ;;
    video) args=(tests/test_sam2_video_predictor.py tests/test_tracker_policies.py
                 tests/test_tracker.py tests/test_video_reference.py) ;;
    export) args=(tests/test_export_platforms.py tests/test_install.py tests/modeling tests/test_exported.py
                  tests/test_porting.py tests/test_automatic_mask_generator.py -k "not groceries-m2m") ;;
    *) echo "unknown part $part (training, tools, video, export)" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  SAM2_JAX_MEASURED="$out/$part.json" .venv/bin/python -m pytest -q -rs --durations=40 -m slow -p no:cacheprovider \
    --junitxml="$out/$part.xml" "${args[@]}" >"$out/$part.log" 2>&1 || status=1
  echo "$part: $(tail -n 1 "$out/$part.log") ($(( ($(date +%s) - start) / 60 )) min)"
done
exit $status
