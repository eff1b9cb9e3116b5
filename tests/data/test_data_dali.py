"""DALI pipelines on the CPU backend (device_id=None): arrays, CIFAR arrays, image files,
sharding and epochs; lazy import and the install hint."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sslfast.data_pipelines import CIFAR10_MEAN, CIFAR10_STD, ViewSpec, byol, emp_ssl, eval_spec, make_synthetic, simclr

REPO = Path(__file__).resolve().parents[2]


def test_importing_sslfast_never_imports_dali_or_triton():
    code = ("import sys, sslfast, sslfast.data_pipelines, sslfast.data_pipelines.dali, "
            "sslfast.data_pipelines.gpu_augment, sslfast.data_pipelines.datasets; "
            "bad = [m for m in sys.modules if m.startswith(('nvidia', 'triton'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO.parent)


def test_missing_dali_names_install_line(monkeypatch):
    from sslfast.data_pipelines import dali

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(ImportError, match=r"pip install 'sslfast\[dali\]'"):
        dali.DaliViewLoader(simclr(), images=make_synthetic(4).images)


pytest.importorskip("nvidia.dali", reason="DALI not installed (pip install 'sslfast[dali]')")
from sslfast.data_pipelines.dali import DaliViewLoader  # noqa: E402

pytestmark = pytest.mark.dali


def normalise(images, spec):
    return (images.float() / 255 - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]


def test_arrays_shapes_dtype_range_and_epoch_coverage():
    d = make_synthetic(10, seed=0)
    specs = byol() + emp_ssl(2)
    loader = DaliViewLoader(specs, images=d.images, labels=torch.arange(10), batch_size=4, drop_last=False,
                            num_threads=1, device_id=None, seed=1)
    assert len(loader) == 3
    seen = []
    for views, labels in loader:
        assert len(views) == 4
        for v, s in zip(views, specs):
            assert v.shape == (len(labels), 3, 32, 32) and v.dtype == torch.float32
            assert v.is_contiguous(memory_format=torch.channels_last) and torch.isfinite(v).all()
            x = v * torch.tensor(s.std)[:, None, None] + torch.tensor(s.mean)[:, None, None]
            assert x.min() >= -1e-3 and x.max() <= 1 + 1e-3
        seen += labels.tolist()
    assert sorted(seen) == list(range(10))  # every image once per epoch
    assert loader.epoch == 1
    second = [lab for _, labels in loader for lab in labels.tolist()]
    assert sorted(second) == list(range(10)) and second != seen  # reshuffled per epoch


def test_eval_spec_is_normalisation_and_grayscale_equal_channels():
    d = make_synthetic(6, seed=2)
    spec = eval_spec()[0]
    (v,), labels = next(iter(DaliViewLoader(spec, images=d.images, labels=d.labels, batch_size=6, shuffle=False,
                                            num_threads=1, device_id=None)))
    torch.testing.assert_close(v, normalise(d.images, spec), atol=1e-5, rtol=0)
    assert torch.equal(labels, d.labels)
    gray = ViewSpec(grayscale_p=1.0, jitter_p=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    (g,), _ = next(iter(DaliViewLoader(gray, images=d.images, batch_size=6, num_threads=1, device_id=None)))
    assert (g.amax(dim=1) - g.amin(dim=1)).abs().max() < 1e-4
    assert (g.std(dim=(1, 2, 3)) > 0.01).all()


def test_solarize_only_above_threshold():
    d = make_synthetic(4, seed=3)
    spec = eval_spec()[0].replace(solarize_p=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    (v,), _ = next(iter(DaliViewLoader(spec, images=d.images, batch_size=4, shuffle=False, num_threads=1,
                                       device_id=None)))
    x = d.images.float() / 255
    torch.testing.assert_close(v, torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0)


def test_shards_are_disjoint_and_cover():
    d = make_synthetic(12, seed=0)
    out = []
    for shard in range(2):
        loader = DaliViewLoader(simclr()[:1], images=d.images, labels=torch.arange(12), batch_size=3,
                                num_threads=1, device_id=None, shard_id=shard, num_shards=2, seed=7)
        assert len(loader) == 2
        out.append({int(x) for _, labels in loader for x in labels})
    assert out[0].isdisjoint(out[1]) and out[0] | out[1] == set(range(12))


def test_shard_defaults_from_torchrun_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    loader = DaliViewLoader(simclr()[:1], images=make_synthetic(9).images, batch_size=3, num_threads=1, device_id=None)
    assert (loader.shard_id, loader.num_shards, len(loader)) == (1, 3, 1)
    with pytest.raises(ValueError, match="shard_id must be in"):
        DaliViewLoader(simclr()[:1], images=make_synthetic(9).images, batch_size=3, device_id=None, shard_id=3)


def test_cifar_arrays():
    from test_data_datasets import CIFAR

    if CIFAR is None:
        pytest.skip("CIFAR-10 binary files not found in $SSLFAST_DATA or ../shared/data")
    from sslfast.data_pipelines import load_cifar10

    d = load_cifar10(CIFAR, train=False)
    imgs, labels = d.images[:8], d.labels[:8]
    loader = DaliViewLoader(simclr() + eval_spec(), images=imgs, labels=labels, batch_size=8, shuffle=False,
                            num_threads=1, device_id=None)
    (a, b, e), lab = next(iter(loader))
    assert lab.tolist() == [3, 8, 8, 0, 6, 6, 1, 6]
    assert a.shape == b.shape == (8, 3, 32, 32) and not torch.equal(a, b)
    torch.testing.assert_close(e, normalise(imgs, eval_spec()[0]), atol=1e-5, rtol=0)
    assert e.mean().abs() < 1.0 and abs(CIFAR10_MEAN[0] - 0.4914) < 1e-9 and CIFAR10_STD[2] == 0.2616


def test_image_files_cpu_decoder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40 + i, 36, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.jpg")
    loader = DaliViewLoader(simclr(), file_root=tmp_path, batch_size=3, num_threads=1, device_id=None)
    assert len(loader) == 2
    labels = []
    for views, lab in loader:
        assert [v.shape for v in views] == [(3, 3, 32, 32)] * 2 and torch.isfinite(views[0]).all()
        labels += lab.tolist()
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one source"):
        DaliViewLoader(simclr(), batch_size=2)
    with pytest.raises(ValueError, match=r"uint8 of shape \(N, 3, H, W\)"):
        DaliViewLoader(simclr(), images=np.zeros((2, 32, 32, 3), np.uint8), batch_size=2, device_id=None)
