"""LARS against a float64 hand-written reference, parameter groups, builders, warmup-cosine."""

import io
import math

import pytest
import torch
from helpers import rel_err
from torch import nn

from sslfast.train.optim import LARS, build_optimizer, param_groups_for_ssl, set_lr, warmup_cosine


def _small_model():
    # Linear-BN-ReLU-Linear: weights (2-d) get decay/adaptation, biases and BN params do not.
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[3].weight.zero_()  # hits the ||w|| = 0 -> trust ratio 1 branch on the first step
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.normal_()
    return model


def _lars_reference(params, grads, bufs, no_adapt, lr, momentum, wd, eta, clip_lr):
    """The LARS formula per tensor, in float64 with Python branches (the official-code form)."""
    for i, (w, g) in enumerate(zip(params, grads, strict=True)):
        if i in no_adapt:
            u = g.clone()
        else:
            u = g + wd * w
            w_norm, u_norm = float(w.norm()), float(u.norm())
            q = 1.0  # solo-learn's LARS: a zero-norm tensor keeps the plain rate, unclipped
            if w_norm > 0 and u_norm > 0:
                q = eta * w_norm / u_norm
                if clip_lr:
                    q = min(q / lr, 1.0)
            u = q * u
        bufs[i] = momentum * bufs[i] + u
        params[i] = w - lr * bufs[i]


@pytest.mark.parametrize(
    "clip_lr, eta, tensor_lr, peak",
    # peak 2.0 with clipping: the zero-norm weight's first step is lr·u, not min(1/lr, 1)·lr·u
    [(False, 0.001, False, 0.5), (True, 0.02, False, 0.5), (False, 0.02, True, 0.5), (True, 0.02, True, 2.0)],
)
def test_lars_matches_float64_reference_over_several_steps(clip_lr, eta, tensor_lr, peak):
    torch.manual_seed(0)
    model = _small_model()
    ref_model = _small_model().double()
    ref_model.load_state_dict(model.state_dict())
    names = [n for n, _ in model.named_parameters()]
    no_adapt = {i for i, (_, p) in enumerate(model.named_parameters()) if p.ndim == 1}
    wd, momentum = 0.05, 0.9
    lr0 = torch.tensor(peak) if tensor_lr else peak
    opt = LARS(param_groups_for_ssl(model, wd), lr0, momentum=momentum, eta=eta, clip_lr=clip_lr)

    ref_params = [p.detach().double().clone() for p in ref_model.parameters()]
    ref_bufs = [torch.zeros_like(p) for p in ref_params]
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for step in range(5):
        lr = peak * (1 - step / 10)  # a changing lr checks that lr sits outside the momentum buffer
        set_lr(opt, lr)
        model.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        # Reference gradients at the reference parameters (float64 forward/backward).
        with torch.no_grad():
            for p, rp in zip(ref_model.parameters(), ref_params, strict=True):
                p.copy_(rp)
        ref_model.zero_grad()
        ((ref_model(x.double()) - y.double()) ** 2).mean().backward()
        grads = [p.grad.clone() for p in ref_model.parameters()]
        opt.step()
        _lars_reference(ref_params, grads, ref_bufs, no_adapt, lr, momentum, wd, eta, clip_lr)
    for name, p, rp in zip(names, model.parameters(), ref_params, strict=True):
        assert rel_err(p, rp) < 1e-5 * max(1.0, peak**2), name  # float32 against float64: bigger steps, more rounding
    # The updates actually moved every parameter (the test would otherwise pass trivially).
    for p0, p in zip(_small_model().parameters(), model.parameters(), strict=True):
        assert not torch.equal(p0, p.detach())


def test_excluded_parameters_get_no_decay_and_no_adaptation():
    torch.manual_seed(0)
    model = _small_model()
    with torch.no_grad():
        model[3].weight.normal_()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, wd, eta = 0.1, 0.5, 0.02
    opt = build_optimizer("lars", model, lr, wd, eta=eta, momentum=0.9)
    # Zero gradients: only weight decay can move a parameter.
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, before[n]), f"{n} was decayed"
        else:
            # u = wd * w, q = eta * ||w|| / (wd * ||w||) = eta / wd, step = lr * eta * w.
            assert torch.allclose(p, before[n] * (1 - lr * eta), rtol=1e-6, atol=0), n
    # With gradients: excluded params take the raw SGD step (trust ratio 1, no decay).
    opt = build_optimizer("lars", model, lr, wd, eta=eta, momentum=0.9)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.allclose(p, before[n] - lr * grads[n], rtol=1e-6, atol=1e-7), n
        else:
            assert not torch.allclose(p, before[n] - lr * grads[n]), n
    # The optimizer never writes into p.grad.
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())


def test_param_groups_split_and_skip_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2), nn.LayerNorm(2))
    model.register_parameter("pos_embed", nn.Parameter(torch.zeros(1, 3, 2)))
    model[3].weight.requires_grad_(False)  # frozen: in no group
    groups = param_groups_for_ssl(model, 1e-4)
    decay, no_decay = groups
    assert decay["weight_decay"] == 1e-4 and decay["lars_adaptation"] is True
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_adaptation"] is False
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([model[0].weight, model.pos_embed])
    assert ids(no_decay["params"]) == ids(
        [model[0].bias, model[1].weight, model[1].bias, model[3].bias, model[4].weight, model[4].bias]
    )
    decay, no_decay = param_groups_for_ssl(model, 1e-4, skip_names=["pos_embed"])
    assert ids(decay["params"]) == ids([model[0].weight])
    assert id(model.pos_embed) in ids(no_decay["params"])
    # A model with only 1-d parameters yields a single group (no empty group).
    assert len(param_groups_for_ssl(nn.BatchNorm1d(3), 0.1)) == 1


def test_build_optimizer_kinds_and_state_dict_loads_with_weights_only():
    torch.manual_seed(0)
    model = _small_model()
    model(torch.randn(4, 6)).sum().backward()
    for name, cls in (("lars", LARS), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        opt = build_optimizer(name, model, 0.1, 1e-4)
        assert isinstance(opt, cls)
        assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
        if name != "lars":
            assert opt.defaults["foreach"] is True and not opt.defaults.get("fused")
        opt.step()
        buf = io.BytesIO()
        torch.save(opt.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)  # no callables in the groups
        fresh = build_optimizer(name, model, 0.1, 1e-4)
        fresh.load_state_dict(state)
        assert len(fresh.state) == len(opt.state) > 0
    # An iterable of tensors is accepted too (one group, decay on everything).
    opt = build_optimizer("adamw", list(model.parameters()), 1e-3, 0.05)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.05


def test_tensor_lr_updates_in_place_for_every_optimizer():
    model = _small_model()
    model(torch.randn(4, 6)).sum().backward()
    for name in ("lars", "adamw", "sgd"):
        opt = build_optimizer(name, model, torch.tensor(0.1), 1e-4)
        lr_tensor = opt.param_groups[0]["lr"]
        opt.step()
        set_lr(opt, torch.tensor(0.025))
        assert opt.param_groups[0]["lr"] is lr_tensor and float(lr_tensor) == pytest.approx(0.025)


@pytest.mark.slow
def test_lars_step_and_schedule_compile_fullgraph():
    torch.manual_seed(0)
    model = _small_model()
    twin = _small_model()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(8, 6)
    opt_c = LARS(param_groups_for_ssl(model, 1e-2), torch.tensor(0.0), eta=0.02)
    opt_e = LARS(param_groups_for_ssl(twin, 1e-2), torch.tensor(0.0), eta=0.02)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def compiled_update(step):
        set_lr(opt_c, warmup_cosine(step, 10, 2, 0.5, 0.01))
        opt_c.step()

    for s in range(4):
        for m in (model, twin):
            m.zero_grad()
            m(x).square().mean().backward()
        compiled_update(torch.tensor(s))
        set_lr(opt_e, warmup_cosine(s, 10, 2, 0.5, 0.01))
        opt_e.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert rel_err(p, q) < 1e-6


def test_warmup_cosine_boundaries_and_tensor_form():
    T, W, base, final = 100, 10, 0.8, 0.008
    assert warmup_cosine(0, T, W, base, final) == 0.0
    assert warmup_cosine(0, T, W, base, final, start_lr=0.1) == pytest.approx(0.1)
    assert warmup_cosine(5, T, W, base, final) == pytest.approx(0.4)
    assert warmup_cosine(W, T, W, base, final) == pytest.approx(base)
    assert warmup_cosine(W + (T - W) // 2, T, W, base, final) == pytest.approx((base + final) / 2)
    assert warmup_cosine(T, T, W, base, final) == pytest.approx(final)
    assert warmup_cosine(T + 50, T, W, base, final) == pytest.approx(final)
    values = [warmup_cosine(s, T, W, base, final) for s in range(T + 1)]
    assert all(a < b for a, b in zip(values[:W], values[1 : W + 1], strict=True))  # rising warm-up
    assert all(a >= b for a, b in zip(values[W:-1], values[W + 1 :], strict=True))  # decaying after
    # No warm-up: starts at base.
    assert warmup_cosine(0, T, 0, base, final) == pytest.approx(base)
    # Tensor steps give the same numbers (float32) without leaving the device.
    steps = torch.arange(T + 20)
    t = warmup_cosine(steps, T, W, base, final)
    assert t.dtype == torch.float32 and t.shape == steps.shape
    ref = torch.tensor([warmup_cosine(int(s), T, W, base, final) for s in steps], dtype=torch.float64)
    assert torch.allclose(t.double(), ref, atol=1e-6)
    # Reference cosine at one interior point, from the formula.
    s = 37
    expect = final + (base - final) * 0.5 * (1 + math.cos(math.pi * (s - W) / (T - W)))
    assert warmup_cosine(s, T, W, base, final) == pytest.approx(expect)


def test_bad_arguments():
    model = _small_model()
    with pytest.raises(ValueError, match="unknown optimizer 'adam'.*adamw, lars, sgd"):
        build_optimizer("adam", model, 0.1)
    with pytest.raises(ValueError, match="params is empty"):
        build_optimizer("sgd", [], 0.1)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        LARS(model.parameters(), lr=float("nan"))
    with pytest.raises(ValueError, match="lr must be >= 0"):
        LARS(model.parameters(), lr=-0.1)
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\)"):
        LARS(model.parameters(), lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        param_groups_for_ssl(model, -1.0)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        param_groups_for_ssl([torch.zeros(2)], 0.1)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -1"):
        warmup_cosine(0, 10, -1, 0.1)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        warmup_cosine(0, 0, 0, 0.1)
    with pytest.raises(TypeError, match="step must be an int or a tensor"):
        warmup_cosine(1.5, 10, 2, 0.1)


def test_warmup_keeps_its_slope_when_longer_than_the_run():
    # issue 12: a 10-epoch warm-up in a 2-epoch run must not be squeezed into the run (that ramped
    # VICReg to the full rate in 16 steps and diverged); the run is all warm-up at the recipe's slope
    T, W, base, start = 16, 80, 0.15, 3e-5
    got = [warmup_cosine(s, T, W, base, start_lr=start) for s in range(T + 1)]
    want = [start + (base - start) * s / W for s in range(T + 1)]
    assert got == pytest.approx(want, rel=1e-12)
    assert max(got) == pytest.approx(start + (base - start) * T / W) and max(got) < base / 4  # far below the peak
    t = warmup_cosine(torch.arange(T + 1), T, W, base, start_lr=start)
    torch.testing.assert_close(t.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-6, atol=0)


def test_static_lr_groups_keep_the_base_rate_while_the_rest_follow_the_schedule():
    # solo-learn SimSiam: the predictor's groups are left out of the scheduler (static_lr).
    model = nn.ModuleDict({"backbone": _small_model(), "predictor": nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))})
    for name in ("sgd", "lars"):
        opt = build_optimizer(name, model, torch.tensor(0.5), 1e-4, static_lr=["predictor"])
        fixed = {id(p) for g in opt.param_groups if g["static_lr"] for p in g["params"]}
        assert fixed == {id(p) for p in model["predictor"].parameters()}
        assert len(opt.param_groups) == 4  # (decay, no decay) x (scheduled, static)
        for step in range(6):
            set_lr(opt, warmup_cosine(step, 6, 2, 0.5, start_lr=0.0))
            for g in opt.param_groups:
                want = 0.5 if g["static_lr"] else warmup_cosine(step, 6, 2, 0.5, start_lr=0.0)
                assert float(g["lr"]) == pytest.approx(want), (name, step, g["static_lr"])
    # Without static heads every group is scheduled (and marked so).
    assert not any(g["static_lr"] for g in param_groups_for_ssl(model, 1e-4))
    with pytest.raises(ValueError, match=r"static_lr names submodules \['head'\]"):
        param_groups_for_ssl(model, 1e-4, static_lr=["head"])


def test_simsiam_run_trains_its_predictor_at_the_fixed_base_rate():
    from sslfast.train.config import TrainConfig
    from sslfast.train.setup import build_run, scaled_lr

    cfg = TrainConfig(method="simsiam", data="synthetic", synthetic_size=64, batch_size=16, width=4, device="cpu")
    run = build_run(cfg)
    base = scaled_lr(run.spec)
    set_lr(run.optimizer, run.schedule(0))  # the warm-up's first rate: far below base
    at_base = set()
    for g in run.optimizer.param_groups:
        owner = {n.split(".")[0] for n, p in run.model.named_parameters() if any(p is q for q in g["params"])}
        if float(g["lr"]) == pytest.approx(base):
            at_base |= owner
    assert at_base == {"predictor"}
    assert run.schedule(0) < base / 10


def test_bias_lr_scale_gives_biases_and_norms_their_fraction_of_the_scheduled_rate():
    # The official Barlow Twins code: weights at 0.2 x, biases and BN parameters at 0.0048 x the schedule.
    model = _small_model()
    for lr in (0.5, torch.tensor(0.5)):
        opt = build_optimizer("lars", model, lr, 1e-4, bias_lr_scale=0.024)
        weights, norms = opt.param_groups
        assert (weights["lr_scale"], norms["lr_scale"]) == (1.0, 0.024)
        for step in range(5):
            want = warmup_cosine(step, 5, 2, 0.5)
            set_lr(opt, want)
            assert float(weights["lr"]) == pytest.approx(want)
            assert float(norms["lr"]) == pytest.approx(0.024 * want)
    with pytest.raises(ValueError, match="bias_lr_scale must be > 0"):
        param_groups_for_ssl(model, 1e-4, bias_lr_scale=0.0)


def test_head_lr_scale_multiplies_a_heads_rate_through_the_schedule_and_static_groups():
    # BYOL's predictor learning-rate multiplier; on SimSiam it stacks on the predictor's fixed rate
    model = nn.ModuleDict({"backbone": _small_model(), "predictor": nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))})
    pred = {id(p) for p in model["predictor"].parameters()}
    for static in ((), ("predictor",)):
        opt = build_optimizer(
            "lars", model, torch.tensor(0.5), 1e-4, static_lr=static, bias_lr_scale=0.1, head_lr_scale={"predictor": 10}
        )
        for g in opt.param_groups:
            in_pred = {id(p) for p in g["params"]} <= pred
            assert in_pred or not ({id(p) for p in g["params"]} & pred)  # no group mixes head and body
            want_scale = (10.0 if in_pred else 1.0) * (1.0 if g["lars_adaptation"] else 0.1)
            assert g["lr_scale"] == pytest.approx(want_scale) and g["static_lr"] == (in_pred and bool(static))
        for step in range(5):
            sched = warmup_cosine(step, 5, 2, 0.5, start_lr=0.0)
            set_lr(opt, sched)
            for g in opt.param_groups:
                want = (0.5 if g["static_lr"] else sched) * g["lr_scale"]
                assert float(g["lr"]) == pytest.approx(want), (static, step, g["lr_scale"])
    # groups keep the order they had before head_lr_scale existed, so older checkpoints resume
    plain = param_groups_for_ssl(model, 1e-4, static_lr=["predictor"])
    assert [(g["lars_adaptation"], g["static_lr"]) for g in plain] == [
        (True, False),
        (False, False),
        (True, True),
        (False, True),
    ]
    with pytest.raises(ValueError, match=r"head_lr_scale names submodules \['head'\]"):
        param_groups_for_ssl(model, 1e-4, head_lr_scale={"head": 2.0})
    with pytest.raises(ValueError, match=r"static_lr names submodules \[''\]"):  # the model, not a head
        param_groups_for_ssl(model, 1e-4, static_lr=[""])
    with pytest.raises(ValueError, match=r"head_lr_scale\['predictor'\] must be > 0"):
        param_groups_for_ssl(model, 1e-4, head_lr_scale={"predictor": 0.0})


@pytest.mark.parametrize(
    "name, clip_lr, eta", [("lars", True, 1e-4), ("lars", True, 10.0), ("lars", False, 1e-3), ("sgd", False, 0)]
)
def test_head_lr_scale_multiplies_every_step_of_the_head(name, clip_lr, eta):
    # Clipped LARS steps by min(eta|w|/|u|, lr)·u, so a rate multiplier alone would vanish where the
    # trust ratio binds (eta 1e-4 here); eta 10 never binds. Either way the head moves s times as far.
    import copy

    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model = nn.ModuleDict({"backbone": body, "predictor": nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 3))})
    model.double()  # float64: a step is a small difference of two weights
    x = torch.randn(8, 6, dtype=torch.float64)
    steps = {}
    for scale in (1.0, 10.0):
        m = copy.deepcopy(model)
        kw = dict(eta=eta, clip_lr=clip_lr) if name == "lars" else {}
        opt = build_optimizer(name, m, 0.05, 1e-4, momentum=0.0, head_lr_scale={"predictor": scale}, **kw)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        m["predictor"](m["backbone"](x)).square().mean().backward()
        opt.step()
        steps[scale] = {n: p.detach() - before[n] for n, p in m.named_parameters()}
    for n, d in steps[10.0].items():
        want = steps[1.0][n] * (10.0 if n.startswith("predictor.") else 1.0)
        torch.testing.assert_close(d, want, rtol=1e-9, atol=1e-15, msg=n)
    assert all(d.abs().max() > 0 for n, d in steps[1.0].items() if n != "backbone.0.bias")  # BN cancels that bias


def test_recipe_options_for_heads_and_biases_reach_the_optimizer():
    from sslfast.train.config import ConfigError, TrainConfig
    from sslfast.train.setup import build_run

    kw = dict(data="synthetic", synthetic_size=64, batch_size=16, width=4, device="cpu")
    run = build_run(TrainConfig(method="byol", static_lr=["predictor"], bias_lr_scale=0.5, **kw))
    fixed = {id(p) for g in run.optimizer.param_groups if g["static_lr"] for p in g["params"]}
    assert fixed == {id(p) for p in run.model.predictor.parameters()}
    assert {g["lr_scale"] for g in run.optimizer.param_groups if not g["lars_adaptation"]} == {0.5}
    with pytest.raises(ConfigError, match="static_lr names the predictor, but method 'vicreg' has none"):
        build_run(TrainConfig(method="vicreg", static_lr=["predictor"], **kw))
    run = build_run(TrainConfig(method="simsiam", pred_lr_scale=10.0, **kw))
    pred = {id(p) for p in run.model.predictor.parameters()}
    for g in run.optimizer.param_groups:
        assert g["lr_scale"] == (10.0 if {id(p) for p in g["params"]} <= pred else 1.0)
    with pytest.raises(ConfigError, match="pred_lr_scale applies to methods with a predictor, but method 'vicreg'"):
        build_run(TrainConfig(method="vicreg", pred_lr_scale=10.0, **kw))
    with pytest.raises(ConfigError, match=r"pred_lr_scale must be a finite number > 0 or None, got 0\.0"):
        TrainConfig(pred_lr_scale=0.0).validate()
    for bad, match in ((["backbone"], "static_lr must be a list of heads"), ("predictor", "static_lr must be")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(static_lr=bad).validate()
    with pytest.raises(ConfigError, match=r"bias_lr_scale must be a finite number > 0 or None, got 0\.0"):
        TrainConfig(bias_lr_scale=0.0).validate()
    # eta and the loss's own options reach the optimizer and the loss module
    run = build_run(TrainConfig(method="barlow_twins", eta=0.001, loss_kwargs={"lambda_param": 0.02}, **kw))
    assert {g["eta"] for g in run.optimizer.param_groups} == {0.001}
    assert run.model.loss.lambda_param == 0.02 and run.spec.loss_kwargs == {"lambda_param": 0.02}
    run = build_run(TrainConfig(method="mocov2", queue_size=64, loss_kwargs={"temperature": 0.5}, **kw))
    assert run.spec.loss_kwargs == {"temperature": 0.5, "queue_size": 64}
    with pytest.raises(ConfigError, match=r"loss_kwargs \['lamda'\] are not options of barlow_twins's loss"):
        build_run(TrainConfig(method="barlow_twins", loss_kwargs={"lamda": 0.02}, **kw))
    with pytest.raises(ConfigError, match="lambda_param must be a non-negative number"):
        build_run(TrainConfig(method="barlow_twins", loss_kwargs={"lambda_param": "a"}, **kw))
    with pytest.raises(ConfigError, match="loss_kwargs must be a mapping"):
        TrainConfig(loss_kwargs=[1]).validate()
    with pytest.raises(ConfigError, match=r"eta must be a finite number > 0 or None, got 0\.0"):
        TrainConfig(eta=0.0).validate()
    # lr scaling with the batch: linear (the recipes' rule) or square root
    from sslfast.train.setup import method_spec, scaled_lr

    for rule, want in ((None, 0.3 * 32 / 256), ("linear", 0.3 * 32 / 256), ("sqrt", 0.3 * math.sqrt(32 / 256))):
        cfg = TrainConfig(method="mocov2", batch_size=32, lr_scaling=rule).validate()
        assert scaled_lr(method_spec(cfg)) == pytest.approx(want)
    assert scaled_lr(method_spec(TrainConfig(method="emp_ssl", batch_size=32, lr_scaling="sqrt"))) == 0.3
    with pytest.raises(ConfigError, match="lr_scaling must be one of linear, sqrt, got 'cube'"):
        TrainConfig(lr_scaling="cube").validate()
