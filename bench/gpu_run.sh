#!/usr/bin/env bash
# GPU session runbook, one stage per call: every stage fits in one 10-minute device call and
# writes its JSON (and logs) under $OUT (default bench/results).
#
#   bash bench/gpu_run.sh STAGE [STAGE ...]      stages: tests gate losses augment epoch tta tta-vit all
#
# Runs on a CUDA machine that already has torch + triton and no registry access (the lent
# H100/H200: torch 2.11+cu130, triton 3.6, no DALI). CIFAR-10 is read from $SSLFAST_DATA
# (default .cifar/, git-ignored; see bench/README.md for carrying it over three calls).
set -uo pipefail  # pipefail: a stage's status is its command's, not tee's
export PYTHONUNBUFFERED=1
if [ $# -eq 0 ]; then
  echo "usage: bash bench/gpu_run.sh STAGE [STAGE ...]; stages: tests gate losses augment epoch tta tta-vit all" >&2
  echo "(one device call allows 10 minutes: give one stage per call; 'all' is for an unlimited machine)" >&2
  exit 2
fi
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

# Output streams to a log under $OUT as it comes, so a call cut off by its limit keeps it.
log() { tee -a "$OUT/gpu-run.log"; }
bench() { timeout "${STAGE_TIMEOUT:-570}" python -m sslfast.cli bench "$@" --out "$OUT" 2>&1 | log; }

stage() {
  case "$1" in
    tests)  # the whole suite on the GPU: CUDA-only tests run, the rest run for real instead of interpreted
      timeout "${STAGE_TIMEOUT:-570}" python -m pytest tests -q -p no:cacheprovider -m "not slow" \
        --junitxml="$OUT/gpu-tests.xml" 2>&1 | log ;;
    # The static gate's twin: every captured kernel variant of the quick grid launched for real
    # (gate-full: every case of the full grid small enough to allocate).
    gate)      bench gate --launch --quick ;;
    gate-full) bench gate --launch ;;
    losses)  bench losses ;;
    augment) bench augment ;;
    epoch)   bench epoch ;;
    # The headline: EMP-SSL ours over 3 seeds and the reference recipe in the same command (the
    # ratio is only formed within one file). The reference runs first, one seed, with a training
    # budget that binds it alone; the file is rewritten after every run, so a cut-off keeps both.
    tta)     bench tta --recipe emp_ssl_reference --recipe emp_ssl --seeds 3 --reference-seeds 1 \
               --reference-max-train-seconds "${REFERENCE_BUDGET_S:-150}" ;;
    tta-vit) bench tta --recipe emp_ssl_vit_tiny --seeds 3 ;;
    all)     for s in tests gate losses augment epoch tta tta-vit; do stage "$s" || return; done ;;
    *) echo "unknown stage $1 (tests gate gate-full losses augment epoch tta tta-vit all)" >&2; return 2 ;;
  esac
}

rc=0
for s in "$@"; do echo "== stage $s" | log; stage "$s" || rc=$?; done
ls -la "$OUT"
exit "$rc"
