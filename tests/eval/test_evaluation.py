"""Feature extraction, weighted kNN (vs a float64 brute-force reference), linear probe, KNNMonitor."""

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err
from torch import nn

from sslfast.eval import (
    KNNMonitor,
    extract_features,
    extract_patch_features,
    knn_classify,
    linear_probe,
    normalizer,
)


def _knn_reference(train, train_y, test, k, temperature, num_classes):
    """Brute force in float64: full similarity matrix, explicit one-hot votes."""
    tr = F.normalize(train.double(), dim=1)
    te = F.normalize(test.double(), dim=1)
    sim = te @ tr.T
    top, idx = sim.topk(k, dim=1)
    one_hot = F.one_hot(train_y[idx], num_classes).double()  # (N_test, k, C)
    votes = (one_hot * (top / temperature).exp()[..., None]).sum(1)
    return votes.argmax(1)


def _blobs(n, d, c, spread, gen, centers=None):
    centers = torch.randn(c, d, generator=gen) * spread if centers is None else centers
    y = torch.randint(0, c, (n,), generator=gen)
    return centers[y] + torch.randn(n, d, generator=gen), y, centers


def test_knn_matches_float64_reference_for_any_chunk_size():
    gen = torch.Generator().manual_seed(0)
    train, train_y, centers = _blobs(500, 16, 7, 0.7, gen)  # overlapping classes: votes matter
    test, test_y, _ = _blobs(211, 16, 7, 0.7, gen, centers)
    ref = _knn_reference(train, train_y, test, 20, 0.1, 7)
    results = [
        knn_classify(train, train_y, test, test_y, k=20, temperature=0.1, chunk_size=cs)
        for cs in (1, 13, 211, None)
    ]
    for r in results:
        assert torch.equal(r.predictions, ref)
        assert r.top1 == pytest.approx(100.0 * (ref == test_y).double().mean().item())
    # Overlap makes this a real test: neither trivial nor perfect.
    assert 30 < results[0].top1 < 99


def test_knn_separable_toy_problem_is_perfect_and_scale_invariant():
    gen = torch.Generator().manual_seed(1)
    train, train_y, centers = _blobs(400, 32, 10, 5.0, gen)
    test, test_y, _ = _blobs(300, 32, 10, 5.0, gen, centers)
    r = knn_classify(train, train_y, test, test_y, k=200)
    assert r.top1 == 100.0
    # Cosine similarity: rescaling rows changes nothing.
    scale = torch.rand(300, 1, generator=gen) * 10 + 0.1
    assert torch.equal(knn_classify(train, train_y, test * scale, k=200).predictions, r.predictions)
    assert knn_classify(train, train_y, test, k=5).top1 is None


def test_knn_weights_by_similarity_not_by_majority():
    # Neighbour of class 0 at similarity ~1, two of class 1 at ~0.6: exp(s/T) decides.
    train = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]])
    train_y = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[1.0, 0.01]])
    assert knn_classify(train, train_y, test, k=3, temperature=0.1).predictions.item() == 0
    assert knn_classify(train, train_y, test, k=3, temperature=100.0).predictions.item() == 1


def test_knn_bad_input():
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match=r"k \(N_train=10\) must be an int in \[1, 10\], got 11"):
        knn_classify(x, y, x, k=11)
    with pytest.raises(ValueError, match="train_labels has 9 labels but train_feats has 10 rows"):
        knn_classify(x, y[:9], x, k=3)
    with pytest.raises(ValueError, match="test_labels has 10 labels but test_feats has 4 rows"):
        knn_classify(x, y, x[:4], y, k=3)
    with pytest.raises(TypeError, match="train_labels must be an integer tensor.*float32"):
        knn_classify(x, y.float(), x, k=3)
    with pytest.raises(ValueError, match=r"share D.*\(10, 4\) and \(10, 5\)"):
        knn_classify(x, y, torch.randn(10, 5), k=3)
    with pytest.raises(ValueError, match=r"train_feats must have shape \(N, D\).*\(10, 4, 1\)"):
        knn_classify(x[..., None], y, x, k=3)
    with pytest.raises(ValueError, match="labels must be < num_classes=2, got a maximum of 2"):
        knn_classify(x, torch.arange(10) % 3, x, k=3, num_classes=2)
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        knn_classify(x, y, x, k=3, temperature=0)
    with pytest.raises(TypeError, match="train_feats must be a floating-point tensor"):
        knn_classify(torch.ones(10, 4, dtype=torch.long), y, x, k=3)


class _TinyNet(nn.Module):
    """Records its mode during forward; BN makes eval/train outputs differ."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return F.relu(self.bn(self.conv(x))).mean((2, 3))


def test_extract_features_eval_mode_batches_and_mode_restored():
    torch.manual_seed(0)
    net = _TinyNet()
    with torch.no_grad():
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    net.train()
    feats = extract_features(net, images, batch_size=4, device="cpu")
    assert net.training and net.modes == [False, False, False]  # 3 batches, all in eval
    assert feats.shape == (10, 4) and feats.dtype == torch.float32 and not feats.requires_grad
    net.eval()
    ref = net(images.float() / 255)
    assert rel_err(feats, ref) < 1e-6
    # A normaliser is applied on the device; loaders of (images, labels) work too.
    norm = normalizer((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    expect = net(
        ((images.float() / 255) - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
        / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    )
    labels = torch.arange(10)
    loader = [(images[i : i + 3], labels[i : i + 3]) for i in range(0, 10, 3)]
    feats2, labels2 = extract_features(net, loader, transform=norm, device="cpu", return_labels=True)
    assert rel_err(feats2, expect) < 1e-6 and torch.equal(labels2, labels)
    # bf16 autocast still returns float32, close to the fp32 result.
    feats_bf16 = extract_features(net, images, device="cpu", autocast_dtype=torch.bfloat16)
    assert feats_bf16.dtype == torch.float32 and rel_err(feats_bf16, ref) < 5e-2


def test_extract_features_bad_input():
    net = _TinyNet()
    with pytest.raises(
        ValueError, match=r"data must be an image tensor \(N, C, H, W\), got shape \(3, 8, 8\)"
    ):
        extract_features(net, torch.zeros(3, 8, 8), device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        extract_features(net, torch.zeros(2, 3, 8, 8), batch_size=0, device="cpu")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        extract_features(lambda x: x, torch.zeros(2, 3, 8, 8), device="cpu")
    with pytest.raises(ValueError, match="model must return \\(batch, D\\) features"):
        extract_features(nn.Identity(), torch.zeros(2, 3, 8, 8), device="cpu")
    with pytest.raises(ValueError, match="data is empty"):
        extract_features(net, [], device="cpu")
    with pytest.raises(ValueError, match="return_labels needs"):
        extract_features(net, torch.zeros(2, 3, 8, 8), device="cpu", return_labels=True)


def test_patch_features_are_the_mean_embedding_of_seeded_views():
    from sslfast.data_pipelines import make_views, preset

    from sslfast.train.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone("resnet18_cifar", width=4).train()
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    views = preset("emp_ssl", n_patches=3)
    # 6 views per batch: chunks of 2 images, the last one partial
    got = extract_patch_features(model, images, views, views_per_batch=6, seed=5, device="cpu")
    assert got.shape == (7, model.feat_dim) and got.dtype == torch.float32
    assert model.training  # mode restored
    model.eval()
    extract_patch_features(model, images[:2], views, device="cpu")
    assert not model.training  # either way
    model.train()

    # independent path: the same generator stream, one forward per view, mean over views
    gen = torch.Generator().manual_seed(5)
    model.eval()
    want = []
    with torch.no_grad():
        for chunk in images.split(2):
            crops = make_views(chunk, views, gen)
            want.append(torch.stack([model(c).double() for c in crops]).mean(0))
    assert rel_err(got, torch.cat(want)) < 1e-5
    again = extract_patch_features(model, images, views, views_per_batch=6, seed=5, device="cpu")
    other = extract_patch_features(model, images, views, views_per_batch=6, seed=6, device="cpu")
    assert torch.equal(got, again) and not torch.allclose(got, other)


def test_patch_features_bad_input():
    from sslfast.data_pipelines import preset

    model = nn.Flatten()
    views = preset("emp_ssl", n_patches=2)
    with pytest.raises(TypeError, match=r"images must have dtype torch.uint8 \(raw pixels 0-255\), got torch.float32"):
        extract_patch_features(model, torch.zeros(2, 3, 32, 32), views, device="cpu")
    u8 = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    rgb = r"images must have shape \(N, 3, H, W\) \(NCHW, RGB\), got shape \(2, 32, 32\)"
    with pytest.raises(ValueError, match=rgb):
        extract_patch_features(model, u8[:, 0], views, device="cpu")
    with pytest.raises(ValueError, match="views must hold at least one ViewSpec"):
        extract_patch_features(model, u8, [], device="cpu")
    with pytest.raises(ValueError, match="views_per_batch must be a positive int, got 0"):
        extract_patch_features(model, u8, views, views_per_batch=0, device="cpu")


@pytest.mark.parametrize("optimizer", ["lbfgs", "adamw"])
def test_linear_probe_separable_features_reach_100(optimizer):
    gen = torch.Generator().manual_seed(2)
    centers = torch.randn(10, 64, generator=gen) * 4
    x, y, _ = _blobs(1000, 64, 10, 0, gen, centers)
    xt, yt, _ = _blobs(500, 64, 10, 0, gen, centers)
    # Off-centre, badly scaled features: standardisation must handle them.
    x, xt = x * 50 + 100, xt * 50 + 100
    r = linear_probe(x, y, xt, yt, epochs=100, optimizer=optimizer)
    assert r["top1"] == 100.0 and r["train_top1"] == 100.0
    assert r["train_time_s"] > 0 and r["eval_time_s"] > 0
    assert r["n_train"] == 1000 and r["n_test"] == 500 and r["feat_dim"] == 64 and r["num_classes"] == 10


def test_linear_probe_minibatch_adamw_and_l2_normalise():
    gen = torch.Generator().manual_seed(3)
    x, y, centers = _blobs(600, 32, 5, 4.0, gen)
    xt, yt, _ = _blobs(300, 32, 5, 4.0, gen, centers)
    r = linear_probe(x, y, xt, yt, optimizer="adamw", epochs=5, batch_size=64, lr=1e-2, l2_normalise=True)
    assert r["steps"] == 5 * 10 and r["top1"] > 98


def test_linear_probe_random_labels_is_chance_on_test():
    gen = torch.Generator().manual_seed(4)
    x, xt = torch.randn(300, 128, generator=gen), torch.randn(2000, 128, generator=gen)
    y, yt = torch.randint(0, 10, (300,), generator=gen), torch.randint(0, 10, (2000,), generator=gen)
    r = linear_probe(x, y, xt, yt, epochs=200)
    assert r["train_top1"] > 90  # it fits the training labels...
    assert abs(r["top1"] - 10.0) < 3.5  # ...and learns nothing that transfers (sd ~0.7 points)


def test_linear_probe_average_patches_equals_probe_on_the_mean():
    gen = torch.Generator().manual_seed(5)
    centers = torch.randn(4, 16, generator=gen) * 3
    base, y, _ = _blobs(200, 16, 4, 0, gen, centers)
    base_t, yt, _ = _blobs(100, 16, 4, 0, gen, centers)
    patches = base + 3 * torch.randn(8, 200, 16, generator=gen)  # (P, N, D), noisy per patch
    patches_t = base_t + 3 * torch.randn(8, 100, 16, generator=gen)
    r_avg = linear_probe(patches, y, patches_t, yt, epochs=50, average_patches=True)
    r_mean = linear_probe(patches.mean(0), y, patches_t.mean(0), yt, epochs=50)
    assert r_avg["top1"] == r_mean["top1"] and r_avg["final_loss"] == pytest.approx(
        r_mean["final_loss"], rel=1e-5
    )
    # Averaging 8 patches removes most of the noise: better than probing a single patch.
    r_single = linear_probe(patches[0], y, patches_t[0], yt, epochs=50)
    assert r_avg["top1"] > r_single["top1"]


def test_linear_probe_bad_input():
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    with pytest.raises(ValueError, match=r"\(2, 20, 4\): pass average_patches=True"):
        linear_probe(torch.randn(2, 20, 4), y, x, y)
    with pytest.raises(
        ValueError, match=r"with average_patches=True, test_feats must have shape \(P, N, D\)"
    ):
        linear_probe(torch.randn(2, 20, 4), y, x, y, average_patches=True)
    with pytest.raises(ValueError, match="train_labels has 19 labels but train_feats has 20 rows"):
        linear_probe(x, y[:19], x, y)
    with pytest.raises(ValueError, match="share D, got 4 and 5"):
        linear_probe(x, y, torch.randn(20, 5), y)
    with pytest.raises(ValueError, match="optimizer must be one of adamw, lbfgs, got 'sgd'"):
        linear_probe(x, y, x, y, optimizer="sgd")
    with pytest.raises(ValueError, match="lbfgs' is full-batch"):
        linear_probe(x, y, x, y, batch_size=8)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        linear_probe(x, y - 1, x, y)


def test_knn_monitor_on_toy_images():
    gen = torch.Generator().manual_seed(6)

    # Class = which colour channel is bright: trivially separable for a mean-colour "model".
    def images(n):
        y = torch.randint(0, 3, (n,), generator=gen)
        x = torch.randint(0, 60, (n, 3, 8, 8), generator=gen, dtype=torch.uint8)
        x[torch.arange(n), y] += 150
        return x, y

    (xtr, ytr), (xte, yte) = images(60), images(30)

    class MeanColour(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)) - 0.4

    model = MeanColour().train()
    mon = KNNMonitor(xtr, ytr, xte, yte, k=10, every=5, batch_size=16, device="cpu")
    assert [mon.due(e) for e in (1, 4, 5, 10)] == [False, False, True, True]
    assert mon(model, epoch=5) == 100.0
    assert model.training and mon.history == [(5, 100.0)]
    with pytest.raises(ValueError, match="train_labels has 59 labels but train_images has 60 rows"):
        KNNMonitor(xtr, ytr[:59], xte, yte)
    with pytest.raises(ValueError, match="every must be a positive int"):
        KNNMonitor(xtr, ytr, xte, yte, every=0)


def test_linear_probe_standardises_with_train_statistics_only():
    gen = torch.Generator().manual_seed(7)
    x, y, centers = _blobs(400, 8, 4, 3.0, gen)
    xt, yt, _ = _blobs(200, 8, 4, 3.0, gen, centers)
    xt = xt + 6.0  # shifted test split: train and test statistics now disagree
    r = linear_probe(x, y, xt, yt, epochs=50)
    mean, std = x.mean(0), x.std(0)
    r_manual = linear_probe((x - mean) / std, y, (xt - mean) / std, yt, epochs=50, standardise=False)
    assert r["top1"] == r_manual["top1"]
    assert r["final_loss"] == pytest.approx(r_manual["final_loss"], rel=1e-4)
    # Standardising the test split with its own statistics would undo the shift; train stats keep it.
    r_leak = linear_probe(
        (x - mean) / std, y, (xt - xt.mean(0)) / xt.std(0), yt, epochs=50, standardise=False
    )
    assert r_leak["top1"] > r["top1"] + 10
