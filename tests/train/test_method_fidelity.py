"""Each method's training loss (``SSLModel.forward``, float64) against the formula its spec cites,
written here independently of sslfast's losses, with the cited hyper-parameters hard-coded.

Sources (read, not copied): solo-learn ``solo/losses/{vicreg,barlow,simclr,moco,mocov3,byol,simsiam}.py``
and ``solo/methods/{mocov2plus,mocov3,byol,simsiam}.py`` with ``scripts/pretrain/cifar/*.yaml``;
lightly 1.6 ``TiCoLoss``; the official EMP-SSL ``main.py`` (TotalCodingRate, Similarity_Loss).
The embeddings come from the model's own modules on the same concatenated views; the *loss* is the
part under test.
"""

import pytest
import torch
import torch.nn.functional as F

from sslfast.train.methods import build_model, get_method

B, SIZE = 8, 16


def _model(name: str, **extra):
    torch.manual_seed(0)
    kw = dict(proj_hidden=(24, 24) if len(get_method(name).proj_hidden) == 2 else (24,), proj_out=16)
    if get_method(name).pred_hidden:
        kw["pred_hidden"] = 12
    kw.update(extra)
    model = build_model(get_method(name, **kw), "resnet18_cifar", backbone_kwargs=dict(width=4), backend="torch")
    return model.double().train()


def _views(n: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 3, SIZE, SIZE, generator=g, dtype=torch.float64) for _ in range(n)]


def _online(model, views):
    # one pass over the concatenated views, as SSLModel does (BN statistics over all views)
    with torch.no_grad():
        z = model.projector(model.backbone(torch.cat(views)))
    return list(z.chunk(len(views)))


def _predicted(model, z):
    with torch.no_grad():
        return list(model.predictor(torch.cat(z)).chunk(len(z)))


def _momentum(model, views):
    with torch.no_grad():
        return list(model.momentum_projector(model.momentum_backbone(torch.cat(views))).chunk(len(views)))


def _offdiag(m):
    return m - torch.diag(torch.diag(m))


def _loss(model, views) -> float:
    with torch.no_grad():
        return float(model(views))


def _close(got: float, want: float):
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12), f"{got!r} vs cited {want!r}"


def test_vicreg_solo_learn_weights():
    # solo-learn vicreg_loss_func: 25·mse + 25·(mean relu(1-std_1) + mean relu(1-std_2)) + 1·cov, no 1/2
    model, views = _model("vicreg"), _views(2)
    z1, z2 = _online(model, views)

    def var(z):
        return F.relu(1 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def cov(z):
        n, d = z.shape
        c = (z - z.mean(0)).T @ (z - z.mean(0)) / (n - 1)
        return _offdiag(c).pow(2).sum() / d

    want = 25 * F.mse_loss(z1, z2) + 25 * (var(z1) + var(z2)) + 1 * (cov(z1) + cov(z2))
    _close(_loss(model, views), float(want))


def test_barlow_twins_solo_learn():
    # solo-learn barlow_loss_func: BN(affine=False) per view, c = z1ᵀz2/N, scale 0.1·(Σ(1-c_ii)² + 0.0051·Σ_{i≠j} c_ij²)
    model, views = _model("barlow_twins"), _views(2)
    z1, z2 = _online(model, views)

    def bn(z):
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)

    c = bn(z1).T @ bn(z2) / B
    want = 0.1 * ((torch.diag(c) - 1).pow(2).sum() + 0.0051 * _offdiag(c).pow(2).sum())
    _close(_loss(model, views), float(want))


def test_tico_lightly():
    # lightly TiCoLoss (beta 0.9, rho 8): C ← βC + (1-β)ẑ_aᵀẑ_a/N; 1 - mean⟨ẑ_a, ẑ_b⟩ + ρ·mean(ẑ_a C ẑ_aᵀ)
    model, views = _model("tico"), _views(2)
    for _ in range(2):  # twice: the second step uses the covariance carried in the buffer
        za, zb = (F.normalize(z, dim=1) for z in _online(model, views))
        c = 0.9 * model.loss.C.double() + 0.1 * za.T @ za / B
        want = 1 - (za * zb).sum(1).mean() + 8.0 * ((za @ c) * za).sum(1).mean()
        _close(_loss(model, views), float(want))
        views = _views(2, seed=7)


def test_simclr_nt_xent():
    # solo-learn simclr_loss_func (2 crops, T 0.2): each of the 2N rows against every other row
    model, views = _model("simclr"), _views(2)
    z = F.normalize(torch.cat(_online(model, views)), dim=1)
    s = z @ z.T / 0.2
    s.fill_diagonal_(float("-inf"))
    pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
    want = F.cross_entropy(s, pos)
    _close(_loss(model, views), float(want))


def _moco(q, k, queue, t=0.2):
    # solo-learn moco_loss_func: [q·k⁺, q·queue]/T, target 0
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / t
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def test_mocov2plus_per_view_queues():
    # solo-learn mocov2plus: (moco(q1, k2, queue of k2) + moco(q2, k1, queue of k1)) / 2, then each
    # queue receives its own view's keys; queue_size keys per view
    model = _model("mocov2", loss_kwargs=dict(temperature=0.2, queue_size=2 * B))
    assert model.spec.loss_kwargs["temperature"] == get_method("mocov2").loss_kwargs["temperature"] == 0.2
    q2_bank, q1_bank = model.loss["k2"].bank.clone(), model.loss["k1"].bank.clone()
    assert q2_bank.shape == q1_bank.shape == (2 * B, 16) and not torch.equal(q2_bank, q1_bank)
    for step in range(2):
        views = _views(2, seed=step + 1)
        q1, q2 = _online(model, views)
        k1, k2 = _momentum(model, views)
        want = 0.5 * (_moco(q1, k2, q2_bank) + _moco(q2, k1, q1_bank))
        _close(_loss(model, views), float(want))
        # enqueue semantics of this step (the forward ran under no_grad, so it enqueues nothing);
        # run a grad-enabled forward to push the keys, then check each queue got its own view's keys
        model(views)
        off = step * B
        torch.testing.assert_close(model.loss["k2"].bank[off : off + B].double(), F.normalize(k2, dim=1))
        torch.testing.assert_close(model.loss["k1"].bank[off : off + B].double(), F.normalize(k1, dim=1))
        q2_bank, q1_bank = model.loss["k2"].bank.clone(), model.loss["k1"].bank.clone()


def test_mocov3_summed():
    # MoCo v3 Alg. 1 / solo-learn mocov3: ctr(q1, k2) + ctr(q2, k1), ctr = CE(q·kᵀ/T, diag)·2T, T 0.2
    model, views = _model("mocov3"), _views(2)
    p1, p2 = _predicted(model, _online(model, views))
    k1, k2 = _momentum(model, views)

    def ctr(q, k, t=0.2):
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / t
        return F.cross_entropy(logits, torch.arange(B)) * 2 * t

    _close(_loss(model, views), float(ctr(p1, k2) + ctr(p2, k1)))


def test_byol_solo_learn():
    # solo-learn byol_loss_func(p, z) = 2 - 2·mean cos(p, z); loss = f(p1, k2) + f(p2, k1)
    model, views = _model("byol"), _views(2)
    p1, p2 = _predicted(model, _online(model, views))
    k1, k2 = _momentum(model, views)

    def f(p, z):
        return 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean()

    _close(_loss(model, views), float(f(p1, k2) + f(p2, k1)))


def test_simsiam_solo_learn():
    # solo-learn simsiam: (-mean cos(p1, sg z2) - mean cos(p2, sg z1)) / 2
    model, views = _model("simsiam"), _views(2)
    z1, z2 = _online(model, views)
    p1, p2 = _predicted(model, [z1, z2])
    want = -(F.cosine_similarity(p1, z2, dim=-1).mean() + F.cosine_similarity(p2, z1, dim=-1).mean()) / 2
    _close(_loss(model, views), float(want))


def test_emp_ssl_official():
    # official EMP-SSL: z_i L2-normalised; loss = 200·(−mean_i mean cos(z_i, z̄)) + mean_i TCR(z_i),
    # TCR(Z) = −½ logdet(I_d + d/(m·0.2) ZᵀZ)
    model = _model("emp_ssl", num_views=3)
    views = _views(3)
    z = [F.normalize(zi, dim=1) for zi in _online(model, views)]
    avg = torch.stack(z).mean(0)
    sim = sum(F.cosine_similarity(zi, avg, dim=1).mean() for zi in z) / len(z)
    d = z[0].shape[1]

    def tcr(zi):
        m = zi.shape[0]
        return -0.5 * torch.logdet(torch.eye(d, dtype=zi.dtype) + d / (m * 0.2) * zi.T @ zi)

    want = 200 * -sim + sum(tcr(zi) for zi in z) / len(z)
    _close(_loss(model, views), float(want))


def test_every_method_has_a_fidelity_test():
    from sslfast.train.methods import METHODS

    covered = {"vicreg", "barlow_twins", "tico", "simclr", "mocov2", "mocov3", "byol", "simsiam", "emp_ssl"}
    assert set(METHODS) == covered
