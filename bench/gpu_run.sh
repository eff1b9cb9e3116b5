#!/usr/bin/env bash
# The GPU runbook for a 15-minute lease: the parts ordered by value, each with its own time
# budget (enforced with `timeout`), each writing its JSON under $OUT as it finishes, so a cut-off
# keeps what finished. The budgets sum to at most 12 minutes of run time, in two device calls
# (a call may run 10 minutes at most). See bench/README.md for the exact device-tool calls.
#
#   bash bench/gpu_run.sh --dry-run            the plan, budgets and totals (any machine, no python)
#   bash bench/gpu_run.sh --call 1             parts gate tests losses augment
#   bash bench/gpu_run.sh --call 2             parts epoch tta (needs .cifar/cifar10-subset.npz)
#   bash bench/gpu_run.sh --parts losses,tta   any parts, in the order given
#
# Runs on a CUDA machine that already has torch + triton and no registry access (the lent
# H100/H200: torch 2.11+cu130, triton 3.6, numpy 2.5, no DALI, no pip).
set -uo pipefail  # pipefail: a part's status is its command's, not tee's

# name | budget (s) | call | what it measures. Order = value: the first parts matter most.
PARTS=(
  "gate|40|1|sslfast bench gate --launch: every kernel variant, once"
  "tests|140|1|the tests that need CUDA (pytest subset, junit XML)"
  "losses|200|1|every loss case: time, memory, FLOPs, bytes, % of peak"
  "augment|60|1|fused GPU views/s vs the CPU DataLoader+PIL baseline"
  "epoch|90|2|training step time, ours vs reference (uncompiled)"
  "tta|120|2|EMP-SSL, 1 seed, 40 s training, 10k CIFAR-10 subset"
)
MAX_TOTAL_S=720    # 12 minutes of run time in all
MAX_CALL_S=540     # per call: 10 minutes less start-up, imports and transfers
SUBSET=${SSLFAST_CIFAR_SUBSET:-.cifar/cifar10-subset.npz}
TESTS=(tests/losses/test_infonce.py tests/losses/test_bad_input.py tests/losses/test_lightly_parity.py
       tests/train/test_train_step.py tests/data/test_data_gpu_augment.py)

field() { local IFS='|'; read -r -a f <<<"$1"; echo "${f[$2]}"; }
usage() {
  echo "usage: bash bench/gpu_run.sh --dry-run | --call 1|2 | --parts NAME[,NAME...]" >&2
  echo "parts: $(for p in "${PARTS[@]}"; do printf '%s ' "$(field "$p" 0)"; done)" >&2
}

dry_run() {
  local total=0 call_total
  echo "GPU runbook plan (each part under its own timeout, writing its JSON as it ends)"
  for call in 1 2; do
    call_total=0
    echo "device call $call:"
    for p in "${PARTS[@]}"; do
      [ "$(field "$p" 2)" = "$call" ] || continue
      printf '  part %-8s %4ss  %s\n' "$(field "$p" 0)" "$(field "$p" 1)" "$(field "$p" 3)"
      call_total=$((call_total + $(field "$p" 1)))
    done
    echo "  call $call total ${call_total}s (limit ${MAX_CALL_S}s)"
    [ "$call_total" -le "$MAX_CALL_S" ] || { echo "error: call $call over its limit" >&2; return 1; }
    total=$((total + call_total))
  done
  echo "total ${total}s of run time (limit ${MAX_TOTAL_S}s = 12 min)"
  if [ -f "$SUBSET" ]; then
    echo "CIFAR-10 subset: $SUBSET ($(du -m "$SUBSET" | cut -f1) MB): carry it with call 2"
  else
    echo "CIFAR-10 subset: $SUBSET missing; build it first:"
    echo "  python -m sslfast.data_pipelines.cifar_subset --out $SUBSET"
  fi
  [ "$total" -le "$MAX_TOTAL_S" ] || { echo "error: budgets sum to more than ${MAX_TOTAL_S}s" >&2; return 1; }
}

budget_of() { for p in "${PARTS[@]}"; do [ "$(field "$p" 0)" = "$1" ] && { field "$p" 1; return; }; done; return 1; }

# --- arguments (checked before anything is installed or written) ------------------------------
selected=()
case "${1:-}" in
  --dry-run) dry_run; exit $? ;;
  --call)
    [[ "${2:-}" =~ ^[12]$ ]] || { usage; exit 2; }
    for p in "${PARTS[@]}"; do [ "$(field "$p" 2)" = "$2" ] && selected+=("$(field "$p" 0)"); done ;;
  --parts)
    IFS=',' read -r -a selected <<<"${2:-}"
    [ "${#selected[@]}" -gt 0 ] || { usage; exit 2; }
    for s in "${selected[@]}"; do budget_of "$s" >/dev/null || { echo "unknown part '$s'" >&2; usage; exit 2; }; done ;;
  *) usage; exit 2 ;;
esac

# --- set-up -----------------------------------------------------------------------------------
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export SSLFAST_RESULTS="$OUT"
export SSLFAST_GIT_SHA=${SSLFAST_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
log() { tee -a "$OUT/gpu-run.log"; }

# sslfast.kernels and sslfast.data_pipelines live outside sslfast/ (setup.py maps them), so a
# bare checkout does not import them: install in place, or else link them into sslfast/.
if ! python -c "import sslfast.kernels, sslfast.data_pipelines" 2>/dev/null; then
  if ! python -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
     || ! python -c "import sslfast.kernels, sslfast.data_pipelines" 2>/dev/null; then
    ln -sfn ../kernels sslfast/kernels
    ln -sfn ../data_pipelines sslfast/data_pipelines
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
python -c "import sslfast.kernels, torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" 2>&1 | log \
  || { echo "no CUDA device or no sslfast: stopping" | log; exit 1; }

sslfast() { python -m sslfast.cli "$@"; }

run_part() {
  local name=$1 b
  b=$(budget_of "$name")
  case "$name" in
    gate)
      # the representative grid: the full one compiles ~460 variants, minutes of ptxas on its own
      if ! python -m sslfast.cli bench gate --help >/dev/null 2>&1; then
        echo "skip: 'sslfast bench gate' is not in this build"; return 0
      fi
      timeout -k 5 "$b" python -m sslfast.cli bench gate --launch --quick ;;
    tests)
      timeout -k 5 "$b" python -m pytest "${TESTS[@]}" -q -p no:cacheprovider -m "not slow" -rfE \
        --junitxml="$OUT/gpu-tests.xml" ;;
    losses)  # no torch.compile of the reference: its compile time alone would spend the budget
      timeout -k 5 "$b" python -m sslfast.cli bench losses --no-compile --out "$OUT" ;;
    augment)
      timeout -k 5 "$b" python -m sslfast.cli bench augment --paths baseline,fused --out "$OUT" ;;
    epoch)
      timeout -k 5 "$b" python -m sslfast.cli bench epoch --steps 20 --warmup 3 --no-compile --out "$OUT" ;;
    tta)
      [ -f "$SUBSET" ] || { echo "skip: $SUBSET not here (carry it with the call; see bench/README.md)"; return 0; }
      timeout -k 5 "$b" python -m sslfast.cli bench tta --recipe emp_ssl --seeds 1 --max-train-seconds 40 \
        --data-root "$SUBSET" --knn-train 2000 --probe-epochs 30 --warmup-steps 5 --out "$OUT" ;;
  esac
}

rc=0
for name in "${selected[@]}"; do
  start=$(date +%s)
  echo "== part $name (budget $(budget_of "$name")s)" | log
  run_part "$name" 2>&1 | log
  status=${PIPESTATUS[0]}
  took=$(( $(date +%s) - start ))
  [ "$status" -eq 124 ] && echo "== part $name cut off at its budget; its JSON keeps what finished" | log
  printf '%s\t%s\t%s\t%s\n' "$name" "$(budget_of "$name")" "$took" "$status" >>"$OUT/runbook.tsv"
  [ "$status" -eq 0 ] || rc=$status
done
ls -la "$OUT"
exit "$rc"
