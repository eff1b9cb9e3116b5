"""The loss benchmark cases as pytest-benchmark tests: `pytest bench/ --benchmark-only`.

Quick cases by default; SSLFAST_BENCH_FULL=1 runs the whole grid. fwd+bwd per implementation.
"""
import os

import pytest
import torch

from sslfast.benchmarks.cases import all_cases

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = all_cases(quick=os.environ.get("SSLFAST_BENCH_FULL") != "1")
IMPLS = ["reference", "torch"] + (["triton"] if DEVICE.type == "cuda" else [])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.loss}-" + "-".join(f"{k}{v}" for k, v in c.params.items()))
def test_loss_fwd_bwd(benchmark, case, impl):
    inputs = [x.requires_grad_() for x in case.make_inputs(DEVICE, torch.float32, torch.Generator().manual_seed(0))]
    fn = case.fns[impl]

    def run():
        grads = torch.autograd.grad(fn(*inputs), inputs)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return grads

    benchmark.extra_info.update({"loss": case.loss, **case.params, "impl": impl, "device": DEVICE.type})
    benchmark(run)
