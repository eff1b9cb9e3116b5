"""The augmentation benchmark runs end to end and labels CPU numbers honestly; the PIL
baseline follows the same semantics as the fused path where they can be compared exactly."""
import json
import random

import torch
from sslfast.data_pipelines import emp_ssl, eval_spec, make_synthetic, make_views, simclr
from sslfast.data_pipelines.baseline import PILViewDataset, pil_view


def test_baseline_views_shapes_and_eval_identity():
    d = make_synthetic(4, seed=0)
    ds = PILViewDataset(d.images, d.labels, simclr() + eval_spec() + emp_ssl(2))
    views, label = ds[1]
    assert label == int(d.labels[1]) and len(views) == 5
    assert all(v.shape == (3, 32, 32) and v.dtype == torch.float32 for v in views)
    torch.testing.assert_close(views[2], make_views(d.images[1:2], eval_spec()[0], backend="torch")[0],
                               atol=1e-6, rtol=0)


def test_baseline_flip_gray_solarize_match_fused_semantics():
    from PIL import Image

    d = make_synthetic(1, seed=1)
    img = Image.fromarray(d.images[0].permute(1, 2, 0).numpy())
    spec = eval_spec()[0].replace(flip_p=1.0, grayscale_p=1.0, solarize_p=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    out = torch.from_numpy(pil_view(img, spec, random.Random(0)))
    ref = make_views(d.images, spec, backend="torch")[0]
    # PIL rounds the luma to uint8 between ops: agreement to one grey level
    assert (out - ref).abs().max() <= 1.5 / 255


def test_bench_quick_writes_labelled_json(tmp_path):
    from sslfast.benchmarks.augment import main

    rc = main(["--quick", "--images", "32", "--batch-size", "16", "--workers", "0", "--presets", "cifar-2view",
               "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    (path,) = tmp_path.glob("augment-*.json")
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "augment" and doc["env"]["device_type"] == "cpu"
    assert doc["targets"]["measured_on_gpu"] is False and "NOT a GPU measurement" in doc["targets"]["note"]
    (row,) = doc["results"]
    assert row["preset"] == "cifar-2view" and row["n_views"] == 2
    for key in ("baseline", "fused"):
        assert row[key]["views_per_s"] > 0
    assert "torch impl" in row["fused"]["backend"]
    if "dali" in row:
        assert row["dali"]["backend"] == "DALI CPU backend"
