#!/usr/bin/env bash
# The default test run twice, on two sets of CPU kernels for both libraries, then every recorded bound against the
# larger error of the two (scripts/check_bounds.py): a golden bound must hold on any CPU kind CI may run on, and
# bounds tuned on one machine's rounding have failed on another's twice.
#   native: what this machine picks (XLA:CPU emits 256-bit AVX2+FMA code by default, also on AVX-512 machines;
#           torch's oneDNN and ATen use AVX-512 where the CPU has it).
#   alt:    on an AVX-512 machine, XLA's 512-bit vectors (--xla_cpu_prefer_vector_width=512) and torch capped at
#           AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), as on an AVX2 machine; elsewhere XLA and torch
#           without FMA (--xla_cpu_max_isa=AVX, ONEDNN_MAX_CPU_ISA=AVX, ATEN_CPU_CAPABILITY=default).
# --xla_cpu_max_isa=AVX2 alone changes no bit on an AVX-512 machine with jaxlib 0.10 (measured 2026-12-05), so it
# cannot stand for another CPU kind by itself.
# Usage: scripts/test_isas.sh [OUTDIR] [pytest args...]   (OUTDIR default /tmp/sam2_jax_isas)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sam2_jax_isas}
shift || true
mkdir -p "$out"
export SAM2_JAX_REQUIRE_REFERENCE=1
if grep -qw avx512f /proc/cpuinfo; then
  alt=(XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_prefer_vector_width=512" ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2)
else
  alt=(XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_max_isa=AVX" ONEDNN_MAX_CPU_ISA=AVX ATEN_CPU_CAPABILITY=default)
fi
status=0
for run in native alt; do
  # a fresh compilation cache per run, as on CI's clean checkout, so the minutes printed are CI's
  env=(JAX_COMPILATION_CACHE_DIR="$out/cache-$run")
  [ "$run" = alt ] && env+=("${alt[@]}")
  rm -rf "$out/cache-$run"
  start=$(date +%s)
  env "${env[@]}" SAM2_JAX_MEASURED="$out/$run.json" .venv/bin/python -m pytest -q -rs --durations=40 \
    -n 2 --dist loadfile tests "$@" \
    >"$out/$run.log" 2>&1 || status=1
  echo "$run: $(tail -n 1 "$out/$run.log") ($(( ($(date +%s) - start) / 60 )) min)"
done
.venv/bin/python scripts/check_bounds.py "$out/native.json" "$out/alt.json" || status=1
exit $status
