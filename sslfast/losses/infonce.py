"""InfoNCE family: multi-crop InfoNCE (multi-view SimCLR), NT-Xent and its MoCo memory-bank form.

Multi-crop (SimCLR, Chen et al. 2020, arXiv:2002.05709; solo-learn's multi-view form): rows are
L2-normalised; a row's positives are the same image in the other V−1 views, its negatives every
other row: ``ℓ_i = −log(Σ_pos exp(s_ij/T) / Σ_{j≠i} exp(s_ij/T))``. NT-Xent is V = 2.
MoCo (He et al. 2020, arXiv:1911.05722): queries against [their positive key; a constant bank].

Layers, in order, for each of the two forms:
- ``multicrop_infonce_fwd_torch`` / ``nt_xent_bank_fwd_torch``: the dense torch backend (one
  (N_q, N) logits matrix), the contract of ``sslfast.kernels.infonce.multicrop_infonce_fwd`` /
  ``nt_xent_bank_fwd`` (tiled, online logsumexp, O(N·D) memory);
- ``MultiCropInfoNCEFunction`` / ``NTXentBankFunction``;
- ``multicrop_infonce_loss`` / ``nt_xent_loss`` (functional);
- ``MultiCropInfoNCELoss`` / ``NTXentLoss`` (modules);
- ``multicrop_infonce_loss_reference`` / ``nt_xent_loss_reference`` (textbook, float64 truth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_pair, check_temperature, check_tensor, stack_views
from .._numerics import NORM_EPS, acc_dtype, normalize_backward, normalize_rows
from ..backend import check_backend, resolve_backend
from ..distributed import check_gather_distributed, gather, rank, world_size
from ._common import creating_graph, differentiable_grads, scaled

__all__ = [
    "INFONCE_TILED_MIN_ENTRIES",
    "MultiCropInfoNCELoss",
    "NTXentLoss",
    "multicrop_infonce_loss",
    "multicrop_infonce_loss_reference",
    "nt_xent_loss",
    "nt_xent_loss_reference",
]

# backend="auto" on CUDA runs the dense torch path (one (N_q, N_keys) logits matrix) below this many
# similarity entries and the tiled Triton kernel from there up. PROVISIONAL (2048² ≈ N = 2048 rows
# on one process): no GPU was available when it was set. Measure the crossover with
# `sslfast bench losses` on the GPU and set it from the recorded JSON.
INFONCE_TILED_MIN_ENTRIES = 2048 * 2048


# ---------------------------------------------------------------------------------------------
# torch backend
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
    u, norm = normalize_rows(z.to(acc).reshape(v * bg, d))  # overflow-safe F.normalize
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
    u0, na = normalize_rows(out0.to(acc))  # overflow-safe F.normalize
    u1, nb = normalize_rows(out1.to(acc))
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


def _multicrop_infonce_fwd(backend: str):
    """The forward+gradient launcher of a resolved backend: the Triton op or its torch twin."""
    if backend == "triton":
        from sslfast.kernels.infonce import multicrop_infonce_fwd  # triton is optional: imported on first use

        return multicrop_infonce_fwd
    return multicrop_infonce_fwd_torch


def _nt_xent_bank_fwd(backend: str):
    """The forward+gradient launcher of a resolved backend: the Triton op or its torch twin."""
    if backend == "triton":
        from sslfast.kernels.infonce import nt_xent_bank_fwd  # triton is optional: imported on first use

        return nt_xent_bank_fwd
    return nt_xent_bank_fwd_torch


# ---------------------------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------------------------


class MultiCropInfoNCEFunction(torch.autograd.Function):
    """Multi-crop InfoNCE of (V, B_g, D) keys; queries are images q_start .. q_start+q_count."""

    @staticmethod
    def forward(ctx, z, row_scale, temperature, q_start, q_count, backend):
        loss, grad = _multicrop_infonce_fwd(backend)(
            z, row_scale, temperature, q_start, q_count, ctx.needs_input_grad[0]
        )
        ctx.save_for_backward(grad, z, row_scale)  # z, row_scale: for the double-backward path only
        ctx.params = (temperature, q_start, q_count)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad, z, row_scale = ctx.saved_tensors
        if creating_graph() and ctx.needs_input_grad[0]:  # create_graph=True: a differentiable gradient
            acc, (t, q0, nq) = acc_dtype(z.dtype), ctx.params

            def loss_fn(x):
                rows = multicrop_infonce_loss_reference(x.to(acc), t, reduction="none")
                return (rows[:, q0:q0 + nq] * row_scale.to(acc)).sum()

            (dz,) = differentiable_grads(loss_fn, (z,), grad_out, (True,))
            return dz, None, None, None, None, None
        return scaled(grad_out, grad, ctx.needs_input_grad[0]), None, None, None, None, None


class NTXentBankFunction(torch.autograd.Function):
    """MoCo-form NT-Xent: queries out0, positives out1, negatives the (constant) bank."""

    @staticmethod
    def forward(ctx, out0, out1, bank, temperature, backend):
        compute_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, grad = _nt_xent_bank_fwd(backend)(out0, out1, bank, temperature, compute_grad)
        # For the double-backward path only: the inputs, and the bank as a plain reference with its
        # version (NTXentLoss enqueues into it in place right after this forward; saving it with
        # save_for_backward would make every ordinary backward fail the in-place check).
        ctx.save_for_backward(grad, out0, out1)
        # (no version under torch.compile: tracing it makes an unbacked symbol, and compiled graphs
        # have no double backward anyway)
        ctx.bank, ctx.bank_version = bank, None if torch.compiler.is_compiling() else bank._version
        ctx.temperature = temperature
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad, out0, out1 = ctx.saved_tensors
        need = ctx.needs_input_grad
        if not (need[0] or need[1]):
            return None, None, None, None, None
        if creating_graph():  # create_graph=True: a gradient that is itself differentiable
            bank, acc, t = ctx.bank, acc_dtype(out0.dtype), ctx.temperature
            if ctx.bank_version is not None and bank._version != ctx.bank_version:
                raise RuntimeError(
                    "higher-order gradients (create_graph=True) of the memory-bank NT-Xent need the bank this "
                    "loss used, but it was updated in place since (NTXentLoss enqueues after every forward "
                    "with grad). Call sslfast.functional.nt_xent_loss(out0, out1, memory_bank=bank.clone()) "
                    "and update the bank after the backward"
                )
            d0, d1 = differentiable_grads(
                lambda a, b: nt_xent_loss_reference(a.to(acc), b.to(acc), t, negatives=bank.to(acc)),
                (out0, out1),
                grad_out,
                need[:2],
            )
            return d0, d1, None, None, None
        return scaled(grad_out, grad[0], need[0]), scaled(grad_out, grad[1], need[1]), None, None, None


# ---------------------------------------------------------------------------------------------
# functional
# ---------------------------------------------------------------------------------------------


def _infonce_backend(
    backend: str, device: torch.device, entries: int, d: int | None = None, dtype: torch.dtype | None = None,
    compute_grad: bool = False,
) -> str:
    """The backend that runs: ``auto`` takes the dense torch path below INFONCE_TILED_MIN_ENTRIES
    similarities; ``triton`` (asked or chosen) falls back to torch where the fused kernels cannot serve
    (D, dtype, gradient) without spilling registers or overrunning shared memory
    (``sslfast.kernels.infonce.fused_supported``: with a gradient, padded D ≤ 128 for fp32/bf16/fp16,
    ≤ 64 for exact fp32 dots and fp64; without one, every D)."""
    resolved = resolve_backend(backend, device)
    if backend == "auto" and resolved == "triton" and entries < INFONCE_TILED_MIN_ENTRIES:
        return "torch"
    if resolved == "triton" and d is not None:
        from sslfast.kernels.infonce import fused_supported  # triton is importable: resolved to it

        if not fused_supported(d, dtype, compute_grad):
            return "torch"
    return resolved


def _wants_grad(*xs: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(x.requires_grad for x in xs)


def _row_weights(weights, v: int, b: int, device: torch.device) -> torch.Tensor:
    check_tensor(weights, "weights")
    if tuple(weights.shape) not in ((b,), (v, b)):
        raise ValueError(f"weights must have shape (B,) = ({b},) or (V, B) = ({v}, {b}) to match z, "
                         f"got shape {tuple(weights.shape)}")
    if weights.device != device:
        raise ValueError(f"weights must be on z's device {device}, got {weights.device}")
    return weights.detach().expand(v, b)


def _weight_scale(w: torch.Tensor, w_all: torch.Tensor, vb: int) -> torch.Tensor:
    """Per-row scales ``w_i / (mean(w_all) · V·B)`` (loss = Σ w_i ℓ_i / Σ w_i), after checking the weights.

    Weights must be finite, non-negative and not all zero (the weighted mean is undefined then).
    Eagerly this costs one host sync (only when weights are given) and raises a ValueError; under
    torch.compile there is no sync: an invalid weight vector makes the loss NaN instead, which a
    training loop's finite check catches — never a finite wrong value. ``w_all`` is the gathered
    (global) weights, so every rank reaches the same verdict.
    """
    total = w_all.mean()
    ok = torch.stack([torch.isfinite(w_all).all(), (w_all >= 0).all(), total > 0])
    if not torch.compiler.is_compiling():
        finite, nonneg, positive = ok.tolist()
        if not finite:
            bad = int((~torch.isfinite(w_all)).sum())
            raise ValueError(f"weights must be finite, got {bad} NaN/inf value(s) of {w_all.numel()}")
        if not nonneg:
            raise ValueError(f"weights must be non-negative (quality weights), got a negative minimum of "
                             f"{float(w_all.min()):g}")
        if not positive:
            raise ValueError(f"weights are all zero{' over the global batch' if w_all is not w else ''}: the "
                             "weighted mean Σ w_i ℓ_i / Σ w_i is undefined; give at least one row a positive weight")
    else:
        total = torch.where(ok.all(), total, torch.full_like(total, float("nan")))
    return w / (total * vb)


def multicrop_infonce_loss(
    z, weights: torch.Tensor | None = None, *, temperature: float = 0.1, gather_distributed: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-crop InfoNCE: multi-view SimCLR (Chen et al. 2020, arXiv:2002.05709; solo-learn semantics).

    ``z``: a (V, B, D) tensor or a list of V (B, D) tensors (e.g. 2 global + 6 local crops projected
    to one D). Rows are L2-normalised (F.normalize's eps, so all-zero rows stay finite); the
    positives of a row are the same image in the other V−1 views, the negatives every other row:
    ``ℓ_i = −log(Σ_pos exp(s_ij/T) / Σ_{j≠i} exp(s_ij/T))``, loss = mean_i ℓ_i. Computed with
    logsumexps (stable for any T > 0); the triton backend never stores the N×N similarities.

    ``weights`` (B,) or (V, B), detached: GenView's quality weights (Li et al. 2024,
    arXiv:2403.12003) multiply ℓ_i after normalising them to mean 1 (over the global batch
    when distributed): loss = Σ w_i ℓ_i / Σ w_i. They must be finite, non-negative and not all zero
    (a ValueError eagerly, after one host sync; under torch.compile an invalid vector gives a NaN loss).

    ``gather_distributed``: every rank's rows are keys (negatives; positives by global index),
    and each rank's queries are its own rows, as solo-learn and lightly do. The returned value is
    this rank's share: its mean over ranks equals the single-process loss on the concatenated
    batch, and each rank's input gradient is world_size × its slice of the single-process
    gradient, so DDP's averaging yields exactly the single-process parameter gradient.
    """
    views = stack_views(z, "z", min_views=2)
    temperature = check_temperature(temperature)
    check_gather_distributed(gather_distributed, check_available=False)
    v, b, _ = views.shape
    acc = acc_dtype(views.dtype)
    w = None if weights is None else _row_weights(weights, v, b, views.device).to(acc)
    distributed = gather_distributed and world_size() > 1
    keys = gather(views, 1) if distributed else views
    q_start = rank() * b if distributed else 0
    if w is None:
        scale = torch.full((v, b), 1.0 / (v * b), device=views.device, dtype=acc)
    else:
        w_all = gather(w, 1) if distributed else w
        scale = _weight_scale(w, w_all, v * b)
    backend = _infonce_backend(backend, views.device, v * b * keys.shape[0] * keys.shape[1], views.shape[2],
                               views.dtype, _wants_grad(views))
    if backend == "reference":
        if not distributed:
            return multicrop_infonce_loss_reference(views, temperature, weights=w)
        rows = multicrop_infonce_loss_reference(keys, temperature, reduction="none")
        return (rows[:, q_start:q_start + b] * scale).sum()
    return MultiCropInfoNCEFunction.apply(keys, scale, temperature, q_start, b, backend)


def nt_xent_loss(
    out0: torch.Tensor, out1: torch.Tensor, *, temperature: float = 0.5, memory_bank: torch.Tensor | None = None,
    gather_distributed: bool = False, backend: str = "auto",
) -> torch.Tensor:
    """NT-Xent, the value and gradient of ``lightly.loss.NTXentLoss`` (SimCLR, arXiv:2002.05709).

    Without ``memory_bank``: rows of both views L2-normalised, logits cos/T, each of the 2B rows
    classifies its other view among all 2B−1 other rows; mean cross-entropy. This is
    ``multicrop_infonce_loss`` with V = 2. ``gather_distributed``: local queries against the
    gathered keys, as lightly (see ``multicrop_infonce_loss`` for what the value and gradient are).

    With ``memory_bank`` (K, D), the MoCo form (He et al. 2020, arXiv:1911.05722): queries out0,
    logits [⟨q, k⁺⟩, q·bankᵀ]/T with k⁺ = out1, label 0, mean over the B local rows; the bank
    (normalised keys of earlier steps) is a constant. Updating it is ``NTXentLoss``'s job.
    """
    check_pair(out0, out1, ("out0", "out1"), min_rows=1)
    temperature = check_temperature(temperature)
    check_gather_distributed(gather_distributed, check_available=False)
    b, d = out0.shape
    if memory_bank is not None:
        check_tensor(memory_bank, "memory_bank")
        if memory_bank.dim() != 2 or memory_bank.shape[1] != d:
            raise ValueError(f"memory_bank must have shape (K, D) with D = {d} as out0, "
                             f"got shape {tuple(memory_bank.shape)}")
        if memory_bank.device != out0.device:
            raise ValueError(f"memory_bank must be on out0's device {out0.device}, got {memory_bank.device}")
        bank = memory_bank.detach()
        backend = _infonce_backend(
            backend, out0.device, b * (bank.shape[0] + 1), d, out0.dtype, _wants_grad(out0, out1)
        )
        if backend == "reference":
            return nt_xent_loss_reference(out0, out1, temperature, negatives=bank.clone())
        return NTXentBankFunction.apply(out0, out1, bank, temperature, backend)
    if check_backend(backend) == "reference":
        if gather_distributed and world_size() > 1:
            large0 = gather(normalize_rows(out0)[0])
            large1 = gather(normalize_rows(out1)[0])
            return nt_xent_loss_reference(out0, out1, temperature, out0_large=large0, out1_large=large1, rank=rank())
        return nt_xent_loss_reference(out0, out1, temperature)
    return multicrop_infonce_loss(torch.stack([out0, out1]), temperature=temperature,
                                  gather_distributed=gather_distributed, backend=backend)


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------


def _bank_size(size) -> tuple[int, int] | None:
    """lightly's ``memory_bank_size``: 0 (no bank) or (K, dim); (0, dim) also disables it, as lightly."""
    form = "memory_bank_size must be 0 (no memory bank) or a (K, dim) tuple such as (4096, 128)"
    if isinstance(size, bool):
        raise ValueError(f"{form}, got {size!r}")
    if isinstance(size, int):
        if size == 0:
            return None
        raise ValueError(
            f"{form}, got the bare int {size}: the feature dimension is needed, write memory_bank_size=({size}, dim)"
        )
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in size)
    ):
        k, dim = size
        if k == 0:
            return None
        if dim == 0:
            raise ValueError(f"{form}, got {size!r} (dim must be >= 1)")
        return int(k), int(dim)
    raise ValueError(f"{form}, got {size!r}")


class NTXentLoss(nn.Module):
    """NT-Xent (SimCLR) / MoCo loss; arguments, value and gradient as ``lightly.loss.NTXentLoss``.

    ``memory_bank_size=(K, dim)``: MoCo (He et al. 2020, arXiv:1911.05722). The forward uses the
    bank as it was *before* this step, then enqueues the L2-normalised ``out1`` (detached;
    gathered from every rank when ``gather_distributed``) at ``bank_ptr``, as lightly: only when
    ``out0.requires_grad``, and a batch that runs past the end fills the bank to its end, drops
    the rest and resets the pointer to 0. Unlike lightly, ``bank`` and ``bank_ptr`` are persistent
    buffers (in ``state_dict``: a resumed run continues identically), the update runs on the
    device with no host sync, and the initial bank (random unit rows, as lightly) comes from a
    generator seeded with ``bank_seed``, so it is reproducible and the same on every rank.
    See ``nt_xent_loss``.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size=0,
        gather_distributed: bool = False,
        backend: str = "auto",
        bank_seed: int = 0,
    ):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.memory_bank_size = _bank_size(memory_bank_size)
        self.gather_distributed = check_gather_distributed(gather_distributed)
        self.backend = check_backend(backend)
        if self.memory_bank_size is not None:
            gen = torch.Generator().manual_seed(check_int(bank_seed, "bank_seed", min=0))
            bank = F.normalize(torch.randn(self.memory_bank_size, generator=gen), dim=1)
            self.register_buffer("bank", bank)
            self.register_buffer("bank_ptr", torch.zeros(1, dtype=torch.long))
        else:
            self.bank = None

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        if self.bank is None:
            return nt_xent_loss(
                out0,
                out1,
                temperature=self.temperature,
                gather_distributed=self.gather_distributed,
                backend=self.backend,
            )
        k, dim = self.bank.shape
        if isinstance(out0, torch.Tensor) and out0.dim() == 2 and out0.shape[1] != dim:
            raise ValueError(
                f"NTXentLoss was built with memory_bank_size=({k}, {dim}), got out0 with D={out0.shape[1]}: "
                f"the bank stores D-dimensional keys, use memory_bank_size=({k}, {out0.shape[1]})"
            )
        loss = nt_xent_loss(out0, out1, temperature=self.temperature, memory_bank=self.bank, backend=self.backend)
        if out0.requires_grad:
            self._enqueue(out1)
        return loss

    @torch.no_grad()
    def _enqueue(self, out1: torch.Tensor) -> None:
        keys = normalize_rows(out1.detach().to(acc_dtype(out1.dtype)))[0].to(self.bank.dtype)
        if self.gather_distributed and world_size() > 1:
            keys = gather(keys)
        k, n = self.bank.shape[0], keys.shape[0]
        ptr = self.bank_ptr
        # Rows past the end are dropped (lightly): they are redirected to row K−1 carrying the
        # very value that row receives anyway, so duplicate writes agree and no sync is needed.
        idx = (ptr + torch.arange(n, device=ptr.device)).clamp(max=k - 1)
        self.bank.index_copy_(0, idx, keys[idx - ptr])
        self.bank_ptr.copy_(torch.where(ptr + n >= k, torch.zeros_like(ptr), ptr + n))


class MultiCropInfoNCELoss(nn.Module):
    """Multi-crop InfoNCE (multi-view SimCLR) with optional GenView quality weights.

    ``forward(z, weights=None)``: z is (V, B, D) or a list of V (B, D) tensors. See
    ``multicrop_infonce_loss``.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = False, backend: str = "auto"):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = check_gather_distributed(gather_distributed)
        self.backend = check_backend(backend)

    def forward(self, z, weights: torch.Tensor | None = None) -> torch.Tensor:
        return multicrop_infonce_loss(
            z, weights, temperature=self.temperature, gather_distributed=self.gather_distributed, backend=self.backend
        )


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------


def nt_xent_loss_reference(
    out0: torch.Tensor, out1: torch.Tensor, temperature: float = 0.5, negatives: torch.Tensor | None = None,
    out0_large: torch.Tensor | None = None, out1_large: torch.Tensor | None = None, rank: int = 0,
) -> torch.Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020, arXiv:2002.05709; MoCo, He et al. 2020, arXiv:1911.05722).

    The semantics of lightly 1.6.0 lightly/loss/ntx_ent_loss.py::NTXentLoss.forward:
    - ``negatives`` (K, D) given (memory bank, the bank *before* this step's update): logits
      [⟨q, k⁺⟩, q·bankᵀ]/T with q = out0, k⁺ = out1, label 0;
    - otherwise the 2B rows of both views against all other rows, positives the other view.
      ``out0_large``/``out1_large`` are the normalised gathered batches when distributed
      (local queries against global keys, labels offset by ``rank``·B).
    """
    batch_size = out0.shape[0]
    out0 = normalize_rows(out0)[0]  # F.normalize, without its overflow of ‖x‖² (finite wrong rows)
    out1 = normalize_rows(out1)[0]
    if negatives is not None:
        negatives = negatives.to(out0.dtype).T
        sim_pos = torch.einsum("nc,nc->n", out0, out1).unsqueeze(-1)
        sim_neg = torch.einsum("nc,ck->nk", out0, negatives)
        logits = torch.cat([sim_pos, sim_neg], dim=1) / temperature
        labels = torch.zeros(logits.shape[0], device=out0.device, dtype=torch.long)
        return F.cross_entropy(logits, labels)
    if out0_large is None:
        out0_large, out1_large = out0, out1
    world = out0_large.shape[0] // batch_size
    diag_mask = torch.zeros((batch_size, batch_size * world), dtype=torch.bool, device=out0.device)
    diag_mask[torch.arange(batch_size), torch.arange(batch_size) + rank * batch_size] = True
    logits_00 = torch.einsum("nc,mc->nm", out0, out0_large) / temperature
    logits_01 = torch.einsum("nc,mc->nm", out0, out1_large) / temperature
    logits_10 = torch.einsum("nc,mc->nm", out1, out0_large) / temperature
    logits_11 = torch.einsum("nc,mc->nm", out1, out1_large) / temperature
    logits_00 = logits_00[~diag_mask].view(batch_size, -1)
    logits_11 = logits_11[~diag_mask].view(batch_size, -1)
    logits = torch.cat([torch.cat([logits_01, logits_00], dim=1), torch.cat([logits_10, logits_11], dim=1)], dim=0)
    labels = (torch.arange(batch_size, device=out0.device) + rank * batch_size).repeat(2)
    return F.cross_entropy(logits, labels)


def multicrop_infonce_loss_reference(
    z: torch.Tensor, temperature: float = 0.1, weights: torch.Tensor | None = None, reduction: str = "mean",
) -> torch.Tensor:
    """Multi-view SimCLR / InfoNCE, the semantics of solo-learn solo/losses/simclr.py::simclr_loss_func.

    ``z`` (V, B, D): rows are L2-normalised; a row's positives are the same image in the other
    views (solo-learn's ``indexes``), the denominator is every row but itself:
    ``ℓ_i = −log(Σ_pos exp(s_ij/T) / Σ_{j≠i} exp(s_ij/T))``. solo-learn sums raw exps; here both
    sums are logsumexps (same value, finite at small T). ``weights`` (B,) or (V, B): GenView's
    quality weights (Li et al. 2024, arXiv:2403.12003), normalised to mean 1, multiply ℓ_i.
    ``reduction="none"`` returns the (V, B) per-row losses (unweighted).
    """
    v, b, d = z.shape
    z = normalize_rows(z.reshape(v * b, d))[0]  # F.normalize, without its overflow of ‖x‖²
    indexes = torch.arange(b, device=z.device).repeat(v)
    sim = torch.einsum("if,jf->ij", z, z) / temperature
    pos_mask = indexes[:, None] == indexes[None, :]
    pos_mask.fill_diagonal_(False)
    self_mask = torch.eye(v * b, dtype=torch.bool, device=z.device)
    log_pos = torch.logsumexp(sim.masked_fill(~pos_mask, float("-inf")), 1)
    log_all = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), 1)
    rows = (log_all - log_pos).reshape(v, b)
    if reduction == "none":
        return rows
    if weights is None:
        return rows.mean()
    w = weights.detach().to(rows.dtype).expand(v, b)
    return (rows * (w / w.mean())).mean()
