"""pytest-benchmark cases: `pytest bench/ --benchmark-only` (CPU: the torch implementation)."""
import pytest
import torch
from sslfast.data_pipelines import emp_ssl, make_synthetic, make_views, simclr

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BACKEND = "triton" if DEVICE.type == "cuda" else "torch"


@pytest.mark.parametrize("name, specs", [("cifar-2view", simclr()), ("emp-ssl-20patch", emp_ssl(20))])
def test_make_views(benchmark, name, specs):
    images = make_synthetic(256, seed=0).images.to(DEVICE)
    g = torch.Generator(device=DEVICE).manual_seed(0)

    def run():
        out = make_views(images, specs, generator=g, backend=BACKEND)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out

    views = benchmark(run)
    assert len(views) == len(specs)
