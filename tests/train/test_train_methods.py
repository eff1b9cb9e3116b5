"""Method definitions and SSLModel: every method runs a step, one pass per resolution, EMA, losses."""

import pytest
import torch
from sslfast.data_pipelines import make_synthetic
from train_helpers import tiny_spec, tiny_step

from sslfast.train.methods import METHODS, SSLModel, get_method, moco_v3_loss, momentum_tau
from sslfast.train.models import build_backbone


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_one_step(name):
    # simclr / mocov2 need the InfoNCE family (branch infonce): they fail until it is merged.
    model, opt, step = tiny_step(name)
    images = make_synthetic(16, 10, 16, seed=1).images
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    ema_before = [p.clone() for p in model.momentum_pairs()[0]]
    out = step(images)
    assert set(out) == {"loss"} and out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    changed = sum(not torch.equal(a, p) for a, p in zip(before, trainable, strict=True))
    assert changed > len(trainable) // 2, f"only {changed}/{len(trainable)} parameters moved"
    if ema_before:  # momentum encoder moved towards the online one, and by less than it
        ema_after = model.momentum_pairs()[0]
        assert any(not torch.equal(a, b) for a, b in zip(ema_before, ema_after, strict=True))
        assert all(not p.requires_grad for p in ema_after)
    assert step.step == 1


def test_momentum_update_is_ema():
    torch.manual_seed(0)
    model = SSLModel(tiny_spec("byol"), build_backbone("resnet18_cifar", width=4))
    ema, online = model.momentum_pairs()
    with torch.no_grad():
        for p in online:
            p.add_(torch.randn_like(p))
    want = [0.9 * e + 0.1 * o for e, o in zip(ema, online, strict=True)]
    model.momentum_update(torch.tensor(0.9))
    for w, e in zip(want, model.momentum_pairs()[0], strict=True):
        torch.testing.assert_close(e, w)


def test_momentum_tau_schedule():
    assert momentum_tau(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert momentum_tau(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert momentum_tau(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert float(momentum_tau(torch.tensor(50), 100, 0.99, 1.0)) == pytest.approx(0.995)


def test_one_backbone_pass_per_resolution():
    torch.manual_seed(0)
    model = SSLModel(tiny_spec("vicreg"), build_backbone("resnet18_cifar", width=4)).eval()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    views = [
        torch.randn(4, 3, 16, 16),
        torch.randn(4, 3, 16, 16),
        torch.randn(4, 3, 8, 8),
        torch.randn(4, 3, 16, 16),
        torch.randn(4, 3, 8, 8),
    ]
    z = model._grouped(model._online, views)
    assert calls == [(12, 3, 16, 16), (8, 3, 8, 8)]
    for v, zi in zip(views, z, strict=True):  # order preserved: equals a pass per view (eval-mode BN)
        torch.testing.assert_close(zi, model._online(v), rtol=1e-5, atol=1e-5)


def test_moco_v3_loss_matches_formula():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    qn, kn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(k, dim=1)
    logits = qn @ kn.T / 0.2
    want = -(logits.diag() - logits.logsumexp(1)).mean() * 0.4
    torch.testing.assert_close(moco_v3_loss(q, k, 0.2, False), want)


def test_get_method_errors():
    with pytest.raises(ValueError, match="unknown method 'nope'.*vicreg"):
        get_method("nope")
    with pytest.raises(TypeError, match="method must be a str"):
        get_method(3)
    with pytest.raises(ValueError, match="unknown MethodSpec field"):
        get_method("vicreg", projector_dims=3)
    assert get_method("BYOL").name == "byol"


def test_sslmodel_bad_input():
    model = SSLModel(tiny_spec("vicreg"), build_backbone("resnet18_cifar", width=4))
    with pytest.raises(TypeError, match="views must be a list"):
        model(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 2 views, got 1"):
        model([torch.randn(2, 3, 16, 16)])
    with pytest.raises(TypeError, match="spec must be a MethodSpec"):
        SSLModel("vicreg", build_backbone("resnet18_cifar", width=4))


def test_bn_per_view_runs_one_pass_per_view_with_its_own_statistics():
    from dataclasses import replace

    torch.manual_seed(0)
    spec = replace(tiny_spec("barlow_twins"), bn_per_view=True)
    model = SSLModel(spec, build_backbone("resnet18_cifar", width=4)).train()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16) * 3 + 1]
    z = model._grouped(model._online, views)
    assert calls == [(4, 3, 16, 16), (4, 3, 16, 16)]
    # train-mode BN: each view's output is what a pass over that view alone gives ...
    for v, zi in zip(views, z, strict=True):
        torch.testing.assert_close(zi, model._online(v), rtol=1e-5, atol=1e-5)
    # ... and differs from the joint pass, whose statistics mix both views
    joint = SSLModel(replace(spec, bn_per_view=False), model.backbone)
    joint.projector.load_state_dict(model.projector.state_dict())
    assert not torch.allclose(joint._grouped(joint._online, views)[0], z[0], atol=1e-3)
