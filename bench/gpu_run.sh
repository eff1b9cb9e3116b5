#!/usr/bin/env bash
# GPU session runbook, one stage per call: every stage fits in one 10-minute device call and
# writes its JSON (and logs) under $OUT (default bench/results).
#
#   bash bench/gpu_run.sh STAGE [STAGE ...]      stages: tests losses augment epoch tta tta-vit all
#
# Runs on a CUDA machine that already has torch + triton and no registry access (the lent
# H100/H200: torch 2.11+cu130, triton 3.6, no DALI). CIFAR-10 is read from $SSLFAST_DATA
# (default .cifar/, git-ignored; see bench/README.md for carrying it over three calls).
set -uo pipefail
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export SSLFAST_RESULTS="$OUT" SSLFAST_DATA=${SSLFAST_DATA:-$PWD/.cifar}
export SSLFAST_GIT_SHA=${SSLFAST_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}

# sslfast.kernels and sslfast.data_pipelines live outside sslfast/ (setup.py maps them), so a
# bare checkout does not import them: install in place, or else link them into sslfast/ (the
# links stay on the device machine; `python -m` puts the repo root first on sys.path anyway).
if ! python -c "import sslfast.kernels, sslfast.data_pipelines" 2>/dev/null; then
  if ! python -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
     || ! python -c "import sslfast.kernels, sslfast.data_pipelines" 2>/dev/null; then
    ln -sfn ../kernels sslfast/kernels
    ln -sfn ../data_pipelines sslfast/data_pipelines
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
python -c "import sslfast.kernels, torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" || exit 1

bench() { timeout "${STAGE_TIMEOUT:-570}" python -m sslfast.cli bench "$@" --out "$OUT" 2>&1 | tail -60; }

stage() {
  case "$1" in
    tests)  # the whole suite on the GPU: CUDA-only tests run, the rest run for real instead of interpreted
      timeout "${STAGE_TIMEOUT:-570}" python -m pytest tests -q -p no:cacheprovider -m "not slow" \
        --junitxml="$OUT/gpu-tests.xml" 2>&1 | tail -60 | tee "$OUT/gpu-tests.txt" ;;
    losses)  bench losses ;;
    augment) bench augment ;;
    epoch)   bench epoch ;;
    # The headline: EMP-SSL ours over 3 seeds and the reference recipe in the same command (the
    # ratio is only formed within one file); the reference is capped so the call fits.
    tta)     bench tta --recipe emp_ssl --recipe emp_ssl_reference --seeds 3 --reference-seeds 1 \
               --max-train-seconds "${REFERENCE_BUDGET_S:-150}" ;;
    tta-vit) bench tta --recipe emp_ssl_vit_tiny --seeds 3 ;;
    all)     for s in tests losses augment epoch tta tta-vit; do stage "$s"; done ;;
    *) echo "unknown stage $1 (tests losses augment epoch tta tta-vit all)" >&2; return 2 ;;
  esac
}

[ $# -gt 0 ] || set -- all
for s in "$@"; do echo "== stage $s"; stage "$s"; done
ls -la "$OUT"
