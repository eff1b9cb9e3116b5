#!/usr/bin/env bash
# One batched GPU session: GPU test suite, then every benchmark, results under $OUT (or bench/results).
# Runs on a CUDA machine that already has torch + triton and no registry access (the lent H100/H200).
set -uo pipefail
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export SSLFAST_RESULTS="$OUT" SSLFAST_GIT_SHA=${SSLFAST_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
python -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2 || export PYTHONPATH=$PWD
python -c "import sslfast, torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
timeout 900 python -m pytest tests -x -q -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" 2>&1 | tail -40 | tee "$OUT/gpu-tests.txt"
python -m sslfast.cli bench losses --out "$OUT" 2>&1 | tail -80
for b in augment epoch tta; do python -m sslfast.cli bench "$b" --out "$OUT" 2>&1 | tail -30; done
ls -la "$OUT"
