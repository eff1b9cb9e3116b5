"""The `torch` backend: the fused algorithms written in plain PyTorch.

Each ``*_fwd_torch`` returns the loss *and* its input gradients in one pass (SSL losses
are terminal scalars), with the same signature as the Triton launcher in ``kernels/``.
It is the default on CPU and the readable specification of what the kernels compute.
"""
from __future__ import annotations

import torch

from ._gram import offdiag_cross, offdiag_self


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in fp32 for fp32/bf16/fp16 inputs and fp64 for fp64 inputs."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _empty_grads(z_a: torch.Tensor, z_b: torch.Tensor):
    return z_a.new_empty(0), z_b.new_empty(0)


def vicreg_fwd_torch(z_a, z_b, lambda_param: float, mu_param: float, nu_param: float, eps: float,
                     compute_grad: bool):
    acc = acc_dtype(z_a.dtype)
    za, zb = z_a.to(acc), z_b.to(acc)
    n, d = za.shape
    diff = za - zb
    flat = diff.reshape(-1)
    loss = (lambda_param / (n * d)) * torch.dot(flat, flat)  # one pass, no temporary
    cov_coef = nu_param / (d * (n - 1) ** 2)
    grads = []
    for z in (za, zb):
        zc = z - z.mean(0)
        off, m, s = offdiag_self(zc)
        sq = s if s is not None else zc.square().sum(0)
        std = torch.sqrt(sq / (n - 1) + eps)
        loss = loss + 0.5 * mu_param * torch.relu(1 - std).mean() + cov_coef * off.to(acc)
        if compute_grad:
            # 4ν/(D(N−1)²)·Zc·Off(C) + var term, in place on m (a fresh GEMM output), one pass:
            # k·(m − zc·s) + zc·v = k·m + zc·(v − k·s) on the Gram route
            k = 4 * cov_coef
            per_col = torch.where(std < 1, -0.5 * mu_param / (d * (n - 1) * std), 0.0)
            if s is not None:
                per_col = per_col - k * s
            grads.append(m.mul_(k).addcmul_(zc, per_col))
    if not compute_grad:
        return (loss, *_empty_grads(z_a, z_b))
    inv_coef = 2 * lambda_param / (n * d)
    return loss, grads[0].add_(diff, alpha=inv_coef).to(z_a.dtype), grads[1].sub_(diff, alpha=inv_coef).to(z_b.dtype)


def _standardise(z: torch.Tensor, eps: float = 1e-5):
    mean = z.mean(0)
    zc = z - mean
    rstd = torch.rsqrt(zc.square().mean(0) + eps)
    return zc * rstd, rstd


def _standardise_backward(g: torch.Tensor, zhat: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    # BatchNorm1d(affine=False) backward with batch statistics and biased variance.
    return rstd * (g - g.mean(0) - zhat * (g * zhat).mean(0))


def barlow_twins_fwd_torch(z_a, z_b, lambda_param: float, compute_grad: bool):
    acc = acc_dtype(z_a.dtype)
    n = z_a.shape[0]
    a, ra = _standardise(z_a.to(acc))
    b, rb = _standardise(z_b.to(acc))
    off, diag, ma, mb, gram = offdiag_cross(a, b)
    c = diag / n
    loss = (1 - c).square().sum() + (lambda_param / n**2) * off.to(acc)
    if not compute_grad:
        return (loss, *_empty_grads(z_a, z_b))
    if gram:
        ma, mb = ma - b * diag, mb - a * diag
    on = (-2.0 / n) * (1 - c)
    ga = (2 * lambda_param / n**2) * ma + on * b
    gb = (2 * lambda_param / n**2) * mb + on * a
    return loss, _standardise_backward(ga, a, ra).to(z_a.dtype), _standardise_backward(gb, b, rb).to(z_b.dtype)


def normalize_backward(g: torch.Tensor, u: torch.Tensor, norm: torch.Tensor, eps: float) -> torch.Tensor:
    """Backward of u = x / max(‖x‖, eps) (F.normalize), rows of ``g``/``u``, ``norm`` = ‖x‖ (N, 1)."""
    proj = g - u * (u * g).sum(1, keepdim=True)
    return torch.where(norm > eps, proj / norm.clamp_min(eps), g / eps)


NORM_EPS = 1e-12  # F.normalize's default


def tico_fwd_torch(z_a, z_b, cov, beta: float, rho: float, compute_grad: bool):
    """TiCo loss, gradients and the updated running covariance C' = βC + (1−β)·UaᵀUa/N.

    The loss uses C' (as lightly); C' is a constant for the gradient (B is detached).
    """
    acc = torch.promote_types(acc_dtype(z_a.dtype), cov.dtype)
    za, zb = z_a.to(acc), z_b.to(acc)
    n = za.shape[0]
    na, nb = za.norm(dim=1, keepdim=True), zb.norm(dim=1, keepdim=True)
    ua, ub = za / na.clamp_min(NORM_EPS), zb / nb.clamp_min(NORM_EPS)
    new_cov = torch.addmm(cov.to(acc), ua.T, ua, beta=beta, alpha=(1 - beta) / n)
    p = ua @ new_cov
    loss = 1 - (ua * ub).sum() / n + (rho / n) * (p * ua).sum()
    if not compute_grad:
        return loss, z_a.new_empty(0), z_b.new_empty(0), new_cov.to(cov.dtype)
    gua = (2 * rho * p - ub) / n  # C' symmetric: d(uCuᵀ)/du = 2uC
    gub = -ua / n
    ga = normalize_backward(gua, ua, na, NORM_EPS)
    gb = normalize_backward(gub, ub, nb, NORM_EPS)
    return loss, ga.to(z_a.dtype), gb.to(z_b.dtype), new_cov.to(cov.dtype)


def coding_rate_fwd_torch(z, eps: float, compute_grad: bool):
    """Per-view total coding rate −½·logdet(I + a·ZᵀZ), a = D/(N·eps), for z of shape (V, N, D).

    Sylvester: logdet(I_D + a·ZᵀZ) = logdet(I_N + a·ZZᵀ); the smaller side is factorised, all V
    views in one batched Cholesky (no host sync: cholesky_ex). Gradient: −a·(I + aZZᵀ)⁻¹Z.
    """
    acc = acc_dtype(z.dtype)
    x = z.to(acc)
    v, n, d = x.shape
    a = d / (n * eps)
    rows = n <= d
    k = n if rows else d
    eye = torch.eye(k, device=x.device, dtype=acc).expand(v, k, k)
    gram = torch.baddbmm(eye, x, x.mT, alpha=a) if rows else torch.baddbmm(eye, x.mT, x, alpha=a)
    chol, _ = torch.linalg.cholesky_ex(gram)
    tcr = -torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # −½·2·Σ log diag(L)
    if not compute_grad:
        return tcr, z.new_empty(0)
    grad = torch.cholesky_solve(x, chol) if rows else torch.cholesky_solve(x.mT, chol).mT
    return tcr, (-a * grad).to(z.dtype)


COS_EPS = 1e-8  # F.cosine_similarity's default


def view_invariance_fwd_torch(z, compute_grad: bool):
    """EMP-SSL invariance −mean_{v,b} cos(z_vb, z̄_b), z̄ = mean over views (not detached); z: (V, B, D)."""
    acc = acc_dtype(z.dtype)
    x = z.to(acc)
    v, b, _ = x.shape
    mean = x.mean(0)
    nz = x.norm(dim=-1, keepdim=True).clamp_min(COS_EPS)
    nm = mean.norm(dim=-1, keepdim=True).clamp_min(COS_EPS)
    u, w = x / nz, mean / nm
    cos = (u * w).sum(-1, keepdim=True)
    loss = -cos.mean()
    if not compute_grad:
        return loss, z.new_empty(0)
    direct = (w - cos * u) / nz
    through_mean = (u - cos * w).sum(0) / (nm * v)
    grad = -(direct + through_mean) / (v * b)
    return loss, grad.to(z.dtype)


# ---------------------------------------------------------------------------------------------
# InfoNCE family (issue 3): dense twins of kernels/infonce.py. They hold the (N_q, N) logits,
# which is what `auto` uses below the crossover in sslfast.functional.
# ---------------------------------------------------------------------------------------------


def multicrop_infonce_fwd_torch(z, row_scale, temperature: float, q_start: int, q_count: int, compute_grad: bool):
    """Multi-crop InfoNCE: loss Σ_i c_i (LSE_{j≠i} s_ij/T − LSE_{j∈pos(i)} s_ij/T) and dL/dz.

    ``z`` (V, B_g, D) are the keys (every view of the gathered batch); the queries are images
    ``q_start .. q_start+q_count`` of every view, with per-row scales ``row_scale`` (V, q_count).
    Positives of a row: the same image in the other views. dL/ds_ij = c_i (P_ij − Q_ij)/T, P the
    softmax over j≠i and Q the softmax over the positives.
    """
    acc = acc_dtype(z.dtype)
    v, bg, d = z.shape
    x = z.to(acc).reshape(v * bg, d)
    norm = x.norm(dim=1, keepdim=True)
    u = x / norm.clamp_min(NORM_EPS)
    dev = z.device
    views = torch.arange(v, device=dev)
    img = torch.arange(q_start, q_start + q_count, device=dev)
    qrows = (views[:, None] * bg + img).reshape(-1)
    # positives of the query (view a, image b): image b in every other view, V−1 columns per row
    others = (views[:, None] + torch.arange(1, v, device=dev)[None, :]) % v  # static shape: compile-safe
    pos = (others[:, None, :] * bg + img[None, :, None]).reshape(-1, v - 1)
    uq = u[qrows]
    s = (uq @ u.T) / temperature
    s.scatter_(1, qrows[:, None], float("-inf"))  # drop self in place: no (Nq, N) mask
    s_pos = s.gather(1, pos)
    lse_all = torch.logsumexp(s, 1)
    lse_pos = torch.logsumexp(s_pos, 1)
    c = row_scale.to(acc).reshape(-1)
    loss = (c * (lse_all - lse_pos)).sum()
    if not compute_grad:
        return loss, z.new_empty(0)
    # dL/ds = c/T·(P − Q): P the softmax over j ≠ i (in place on s), Q over the positives (scattered)
    g = s.sub_(lse_all[:, None]).exp_()
    g.scatter_add_(1, pos, -torch.exp(s_pos - lse_pos[:, None]))
    g.mul_((c / temperature)[:, None])
    gu = g.T @ uq  # as keys
    gu = gu.index_add(0, qrows, g @ u)  # as queries
    return loss, normalize_backward(gu, u, norm, NORM_EPS).reshape(v, bg, d).to(z.dtype)


def nt_xent_bank_fwd_torch(out0, out1, bank, temperature: float, compute_grad: bool):
    """MoCo-form NT-Xent: logits [⟨u0_i, u1_i⟩, u0_i·bankᵀ]/T, label 0, mean over the B rows.

    Returns the loss and the stacked (2, B, D) gradient [dL/dout0, dL/dout1]; the bank is constant.
    """
    acc = acc_dtype(out0.dtype)
    a, b = out0.to(acc), out1.to(acc)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    u0, u1 = a / na.clamp_min(NORM_EPS), b / nb.clamp_min(NORM_EPS)
    neg = bank.to(acc)
    logits = torch.cat([(u0 * u1).sum(1, keepdim=True), u0 @ neg.T], 1) / temperature
    lse = torch.logsumexp(logits, 1)
    loss = (lse - logits[:, 0]).mean()
    if not compute_grad:
        return loss, out0.new_empty(0)
    n = out0.shape[0]
    g = torch.exp(logits - lse[:, None]) / (n * temperature)
    g_pos = g[:, :1] - 1.0 / (n * temperature)
    gu0 = g_pos * u1 + g[:, 1:] @ neg
    gu1 = g_pos * u0
    grad = torch.stack([normalize_backward(gu0, u0, na, NORM_EPS), normalize_backward(gu1, u1, nb, NORM_EPS)])
    return loss, grad.to(out0.dtype)
