"""Hostile-input audit of the loss API, the data pipeline and the CLI (issue 13's audit list).

    TRITON_INTERPRET=1 python bench/audit_reliability.py [--only ROW] [--json out.json]

Each case feeds one bad or extreme input and classifies what comes back:

- ``ok``: the correct value, or an error of the expected kind whose message names the argument or
  the file (CLI: exit code 2, ``sslfast <cmd>: error: ...`` on stderr, no traceback);
- ``finite-wrong``: no error and a wrong answer (a finite value far from float64 truth, a bad
  input silently accepted, garbage pixels);
- ``confusing``: an error that does not name what is wrong (wrong type, a Python traceback from
  the CLI, a message about something else).

Rows owned by other work items (item 2: overflow-safe statistics) are run and reported in their own
group, so the counts of this audit are comparable before and after each branch. Not a test: the
suite keeps one case per row in tests/losses/test_reliability.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import traceback
import zlib
from collections import Counter
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

OK, WRONG, CONFUSING = "ok", "finite-wrong", "confusing"
CASES: list[tuple[str, str, object]] = []


def case(row: str, name: str):
    def register(fn):
        CASES.append((row, name, fn))
        return fn

    return register


def expect_error(fn, types, *tokens):
    """ok when ``fn`` raises one of ``types`` whose message holds every token."""
    try:
        out = fn()
    except types as e:
        msg = str(e)
        missing = [t for t in tokens if t not in msg]
        if missing:
            return CONFUSING, f"{type(e).__name__}: {msg[:160]} (does not mention {missing})"
        return OK, f"{type(e).__name__}: {msg[:160]}"
    except Exception as e:  # noqa: BLE001 - classifying is the point
        return CONFUSING, f"{type(e).__name__}: {str(e)[:160]}"
    return WRONG, f"accepted, returned {out!r:.80}"


def close(value, truth, rtol):
    value, truth = float(value), float(truth)
    if not math.isfinite(value):
        return (OK if not math.isfinite(truth) else OK), f"non-finite {value} (fp64 {truth:.6g})"
    if abs(value - truth) <= rtol * max(abs(truth), 1e-12):
        return OK, f"{value:.6g} vs fp64 {truth:.6g}"
    return WRONG, f"{value:.6g} vs fp64 {truth:.6g}"


# ---------------------------------------------------------------------------------------------
# lightly parity
# ---------------------------------------------------------------------------------------------


def _lightly():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "losses"))
    from lightly_compat import import_lightly_loss

    return import_lightly_loss()


for _backend in ("torch", "triton", "reference"):

    @case("lightly parity", f"VICRegLoss (B, M, D) vs lightly, backend={_backend}")
    def _vicreg_3d(backend=_backend):
        import sslfast

        ll = _lightly()
        g = torch.Generator().manual_seed(0)
        x0, x1 = torch.randn(6, 5, 8, generator=g, dtype=torch.float64), torch.randn(6, 5, 8, generator=g).double()
        want = ll.VICRegLoss(nu_param=0.5)(x0, x1)
        try:
            got = sslfast.VICRegLoss(nu_param=0.5, backend=backend)(x0, x1)
        except Exception as e:  # noqa: BLE001
            return CONFUSING, f"{type(e).__name__}: {str(e)[:150]}"
        return close(got, want, 1e-9)


@case("lightly parity", "NTXentLoss(temperature=-1.0)")
def _neg_temp():
    import sslfast

    # Decision (README, Differences from lightly): refused, the error says why.
    return expect_error(lambda: sslfast.NTXentLoss(temperature=-1.0), ValueError, "temperature", "-1")


# ---------------------------------------------------------------------------------------------
# double backward
# ---------------------------------------------------------------------------------------------


def _pair_losses():
    import sslfast.functional as F

    return {
        "vicreg": (lambda a, b, be: F.vicreg_loss(a, b, backend=be)),
        "barlow_twins": (lambda a, b, be: F.barlow_twins_loss(a, b, backend=be)),
        "tico": (lambda a, b, be: F.tico_loss(a, b, torch.eye(a.shape[1], dtype=a.dtype) * 0.1, backend=be)[0]),
        "nt_xent": (lambda a, b, be: F.nt_xent_loss(a, b, backend=be)),
        "moco": (
            lambda a, b, be: F.nt_xent_loss(
                a,
                b,
                memory_bank=torch.randn(5, a.shape[1], dtype=a.dtype, generator=torch.Generator().manual_seed(3)),
                backend=be,
            )
        ),
        "multicrop": (lambda a, b, be: F.multicrop_infonce_loss(torch.stack([a, b, a * b]), backend=be)),
        "coding_rate": (lambda a, b, be: F.total_coding_rate(torch.stack([a, b]), backend=be)),
        "emp_ssl": (lambda a, b, be: F.emp_ssl_loss(torch.stack([a, b, a - b]), inv_coef=3.0, backend=be)),
    }


for _name in _pair_losses():
    for _backend in ("torch", "triton"):

        @case("double backward", f"hessian of {_name}, backend={_backend}")
        def _hessian(name=_name, backend=_backend):
            fn = _pair_losses()[name]
            g = torch.Generator().manual_seed(1)
            a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g).double()
            try:
                h = torch.autograd.functional.hessian(lambda x, y: fn(x, y, backend), (a, b))
            except Exception as e:  # noqa: BLE001
                ok = any(t in str(e) for t in ("double backward", "higher-order", "once_differentiable"))
                return (OK if ok else CONFUSING), f"{type(e).__name__}: {str(e)[:150]}"
            ref = torch.autograd.functional.hessian(lambda x, y: fn(x, y, "reference"), (a, b))
            err = max(float((h[i][j] - ref[i][j]).abs().max()) for i in range(2) for j in range(2))
            scale = max(float(ref[i][j].abs().max()) for i in range(2) for j in range(2))
            return (OK if err <= 1e-6 * scale else WRONG), f"max |H - H_ref| = {err:.3g} (|H_ref| {scale:.3g})"

    @case("double backward", f"gradient penalty on {_name} + 1/2|z|^2")
    def _penalty(name=_name):
        fn = _pair_losses()[name]
        g = torch.Generator().manual_seed(2)
        a0, b0 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g).double()
        vals = {}
        for backend in ("torch", "reference"):
            a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
            try:
                f = fn(a, b, backend) + 0.5 * (a.square().sum() + b.square().sum())
                ga, gb = torch.autograd.grad(f, (a, b), create_graph=True)
                pen = ga.square().sum() + gb.square().sum()
                pen.backward()
                pen = pen.detach()
            except Exception as e:  # noqa: BLE001
                ok = any(t in str(e) for t in ("double backward", "higher-order", "once_differentiable"))
                return (OK if ok else CONFUSING), f"{type(e).__name__}: {str(e)[:150]}"
            vals[backend] = (float(pen), a.grad.clone())
        (p, g1), (pr, g2) = vals["torch"], vals["reference"]
        rel = float((g1 - g2).norm()) / float(g2.norm())
        good = abs(p - pr) <= 1e-9 * abs(pr) and rel <= 1e-8
        return (OK if good else WRONG), f"penalty {p:.6g} vs reference {pr:.6g}; d(penalty)/dz rel. error {rel:.3g}"


# ---------------------------------------------------------------------------------------------
# loss arguments
# ---------------------------------------------------------------------------------------------

INF, NAN = float("inf"), float("nan")


def _losses_module():
    import sslfast

    return sslfast


for _label, _make, _tokens in [
    ("NTXentLoss(temperature=inf)", lambda s: s.NTXentLoss(temperature=INF), ("temperature",)),
    ("NTXentLoss(temperature=nan)", lambda s: s.NTXentLoss(temperature=NAN), ("temperature",)),
    ("NTXentLoss(temperature=0)", lambda s: s.NTXentLoss(temperature=0.0), ("temperature",)),
    ("MultiCropInfoNCELoss(temperature=-0.1)", lambda s: s.MultiCropInfoNCELoss(temperature=-0.1), ("temperature",)),
    ("TotalCodingRate(eps=inf)", lambda s: s.TotalCodingRate(eps=INF), ("eps",)),
    ("TotalCodingRate(eps=nan)", lambda s: s.TotalCodingRate(eps=NAN), ("eps",)),
    ("EMPSSLLoss(tcr_eps=inf)", lambda s: s.EMPSSLLoss(tcr_eps=INF), ("tcr_eps",)),
    ("VICRegLoss(eps=inf)", lambda s: s.VICRegLoss(eps=INF), ("eps",)),
    ("VICRegLoss(mu_param=nan)", lambda s: s.VICRegLoss(mu_param=NAN), ("mu_param",)),
    ("BarlowTwinsLoss(lambda_param=inf)", lambda s: s.BarlowTwinsLoss(lambda_param=INF), ("lambda_param",)),
    ("TiCoLoss(rho=inf)", lambda s: s.TiCoLoss(rho=INF), ("rho",)),
    ("TiCoLoss(beta=nan)", lambda s: s.TiCoLoss(beta=NAN), ("beta",)),
    ("NTXentLoss(memory_bank_size=(4, 0))", lambda s: s.NTXentLoss(memory_bank_size=(4, 0)), ("memory_bank_size",)),
]:

    @case("loss arguments", _label)
    def _bad_hparam(make=_make, tokens=_tokens):
        return expect_error(lambda: make(_losses_module()), (ValueError, TypeError), *tokens)


@case("loss arguments", "TiCoLoss(beta='0.9')")
def _tico_beta_str():
    return expect_error(lambda: _losses_module().TiCoLoss(beta="0.9"), (ValueError, TypeError), "beta", "'0.9'")


@case("loss arguments", "TiCoLoss(dim=-3)")
def _tico_dim():
    return expect_error(lambda: _losses_module().TiCoLoss(dim=-3), ValueError, "dim", "-3")


@case("loss arguments", "TiCoLoss(dim=2.5)")
def _tico_dim_float():
    return expect_error(lambda: _losses_module().TiCoLoss(dim=2.5), (ValueError, TypeError), "dim", "2.5")


@case("loss arguments", "VICRegLoss(gather_distributed='yes')")
def _gather_str():
    return expect_error(lambda: _losses_module().VICRegLoss(gather_distributed="yes"), TypeError, "gather_distributed")


for _label, _w, _tokens in [
    ("multi-crop weights all zero", torch.zeros(4), ("weights",)),
    ("multi-crop weights negative", torch.tensor([1.0, -1.0, 1.0, 1.0]), ("weights", "negative")),
    ("multi-crop weights NaN", torch.tensor([1.0, NAN, 1.0, 1.0]), ("weights",)),
    ("multi-crop weights inf", torch.tensor([1.0, INF, 1.0, 1.0]), ("weights",)),
]:

    @case("loss arguments", _label)
    def _weights(w=_w, tokens=_tokens):
        import sslfast.functional as F

        z = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
        return expect_error(lambda: float(F.multicrop_infonce_loss(z, w)), ValueError, *tokens)


@case("loss arguments", "multi-crop weights all zero, backend=triton")
def _weights_triton():
    import sslfast.functional as F

    z = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    return expect_error(
        lambda: float(F.multicrop_infonce_loss(z, torch.zeros(4), backend="triton")), ValueError, "weights"
    )


# ---------------------------------------------------------------------------------------------
# item 2 (owned by the overflow-safe statistics branch): large magnitudes
# ---------------------------------------------------------------------------------------------


def _magnitude_case(name, fn, dtype, scale):
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(8, 16, generator=g, dtype=torch.float64), torch.randn(8, 16, generator=g).double()
    truth = fn(a * scale, b * scale, "reference")
    try:
        got = fn((a * scale).to(dtype), (b * scale).to(dtype), "torch")
    except Exception as e:  # noqa: BLE001
        return CONFUSING, f"{type(e).__name__}: {str(e)[:150]}"
    if not math.isfinite(float(truth)):
        return OK, "fp64 non-finite"
    return close(got, truth, 2e-2 if dtype == torch.bfloat16 else 1e-3)


for _name in ("vicreg", "barlow_twins", "tico", "nt_xent", "multicrop", "coding_rate", "emp_ssl"):
    for _dtype in (torch.float32, torch.bfloat16):

        @case("item 2: large magnitudes", f"{_name} {str(_dtype)[6:]} x 1e20")
        def _mag(name=_name, dtype=_dtype):
            return _magnitude_case(name, _pair_losses()[name], dtype, 1e20)


# ---------------------------------------------------------------------------------------------
# data: PNG decoding, ViewSpec, CIFAR labels
# ---------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: Path, pixels, bit_depth: int, color_type: int) -> None:
    """A PNG written byte by byte (PIL cannot write every bit depth / colour type)."""
    import numpy as np

    arr = np.asarray(pixels)
    h, w = arr.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = arr.astype(dtype).reshape(h, -1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def _folder(tmp: Path, name: str) -> Path:
    root = tmp / name
    (root / "a").mkdir(parents=True, exist_ok=True)
    return root


def _decode_case(make_file, expected=None, tokens=()):
    from sslfast.data_pipelines.datasets import ImageFolder

    with tempfile.TemporaryDirectory() as d:
        root = _folder(Path(d), "imgs")
        path = make_file(root / "a")
        try:
            img = ImageFolder(root)[0][0]
        except Exception as e:  # noqa: BLE001
            msg = str(e)
            named = path.name in msg
            if expected is None and named:
                return OK, f"{type(e).__name__}: {msg[:150]}"
            return CONFUSING, f"{type(e).__name__}: {msg[:150]}"
        if expected is None:
            return WRONG, f"decoded without error: min {int(img.min())} max {int(img.max())}"
        diff = int((img.int() - expected.int()).abs().max())
        return (OK if diff <= 1 else WRONG), f"max |decoded - expected| = {diff}"


@case("data", "16-bit grayscale PNG (I;16)")
def _png16_gray():
    import numpy as np

    v = np.array([[0, 257, 1000], [30000, 65535, 12345]], dtype=np.uint16)

    def make(folder):
        p = folder / "g16.png"
        write_png(p, v, 16, 0)
        return p

    exp = torch.from_numpy(np.rint(v / 257.0).astype(np.uint8))[None].expand(3, -1, -1)
    return _decode_case(make, exp)


@case("data", "16-bit RGB PNG")
def _png16_rgb():
    import numpy as np

    v = np.random.default_rng(0).integers(0, 65536, (3, 4, 3)).astype(np.uint16)

    def make(folder):
        p = folder / "rgb16.png"
        write_png(p, v, 16, 2)
        return p

    exp = torch.from_numpy(np.rint(v / 257.0).astype(np.uint8)).permute(2, 0, 1)
    return _decode_case(make, exp)


@case("data", "16-bit gray+alpha PNG")
def _png16_la():
    import numpy as np

    v = np.random.default_rng(1).integers(0, 65536, (3, 4, 2)).astype(np.uint16)

    def make(folder):
        p = folder / "la16.png"
        write_png(p, v, 16, 4)
        return p

    exp = torch.from_numpy(np.rint(v[..., 0] / 257.0).astype(np.uint8))[None].expand(3, -1, -1)
    return _decode_case(make, exp)


@case("data", "truncated PNG")
def _png_truncated():
    import numpy as np

    def make(folder):
        p = folder / "cut.png"
        write_png(p, np.random.default_rng(2).integers(0, 255, (64, 64, 3)), 8, 2)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p

    return _decode_case(make)


@case("data", "not an image (.png holding text)")
def _png_garbage():
    def make(folder):
        p = folder / "fake.png"
        p.write_text("hello")
        return p

    return _decode_case(make)


@case("data", "decompression bomb PNG")
def _png_bomb():
    from PIL import Image

    def make(folder):
        p = folder / "bomb.png"
        side = int((Image.MAX_IMAGE_PIXELS * 2.2) ** 0.5)
        raw = zlib.compress(b"".join(b"\x00" + bytes(side) for _ in range(side)), 9)
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        p.write_bytes(
            b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")
        )
        return p

    return _decode_case(make)


for _label, _kw, _tokens in [
    ("ViewSpec jitter NaN", dict(jitter=(NAN, 0.4, 0.4, 0.1)), ("jitter",)),
    ("ViewSpec jitter inf", dict(jitter=(0.4, INF, 0.4, 0.1)), ("jitter",)),
    ("ViewSpec mean NaN", dict(mean=(NAN, 0.5, 0.5)), ("mean",)),
    ("ViewSpec mean inf", dict(mean=(0.5, INF, 0.5)), ("mean",)),
    ("ViewSpec std NaN", dict(std=(0.2, NAN, 0.2)), ("std",)),
    ("ViewSpec std inf", dict(std=(0.2, 0.2, INF)), ("std",)),
    ("ViewSpec blur_sigma (0.1, inf)", dict(blur_sigma=(0.1, INF)), ("blur_sigma",)),
    ("ViewSpec blur_sigma (nan, 1)", dict(blur_sigma=(NAN, 1.0)), ("blur_sigma",)),
    ("ViewSpec crop_scale (nan, 1)", dict(crop_scale=(NAN, 1.0)), ("crop_scale",)),
    ("ViewSpec solarize_threshold nan", dict(solarize_threshold=NAN), ("solarize_threshold",)),
    ("ViewSpec mean as a string", dict(mean="abc"), ("mean",)),
    ("ViewSpec std=1.0 (not a triple)", dict(std=1.0), ("std",)),
]:

    @case("data", _label)
    def _viewspec(kw=_kw, tokens=_tokens):
        from sslfast.data_pipelines.views import ViewSpec

        return expect_error(lambda: ViewSpec(**kw), (ValueError, TypeError), *tokens)


@case("data", "load_cifar10(verify=False) with label byte 200")
def _cifar_label():
    import numpy as np
    from sslfast.data_pipelines.datasets import CIFAR10, load_cifar10

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "cifar-10-batches-bin"
        folder.mkdir()
        rec = CIFAR10.record_bytes
        for f in CIFAR10.train_files:
            n = CIFAR10.records[f]
            raw = np.zeros((n, rec), dtype=np.uint8)
            raw[:, 0] = np.arange(n) % 10
            if f == "data_batch_3.bin":
                raw[17, 0] = 200
            raw.tofile(folder / f)
        return expect_error(lambda: load_cifar10(d, verify=False), Exception, "data_batch_3.bin", "200")


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

_CKPT: dict = {}


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sslfast.cli", *args], capture_output=True, text=True, timeout=900, cwd=cwd
    )


def _cli_verdict(out, cmd: str, *tokens):
    err = out.stderr
    if "Traceback" in err:
        return CONFUSING, f"traceback: {err.strip().splitlines()[-1][:150]}"
    if out.returncode != 2 or f"sslfast {cmd}: error:" not in err:
        return CONFUSING, f"exit {out.returncode}: {err.strip()[-150:]}"
    missing = [t for t in tokens if t not in err]
    if missing:
        return CONFUSING, f"{err.strip()[-150:]} (does not mention {missing})"
    line = next(x for x in err.splitlines() if f"sslfast {cmd}: error:" in x)
    return OK, line[:150]


def _checkpoint(tmp: Path) -> Path:
    if "path" not in _CKPT:
        out = tmp / "run"
        r = _cli(
            "train",
            "--data",
            "synthetic",
            "--synthetic-size",
            "64",
            "--image-size",
            "16",
            "--view-size",
            "16",
            "--width",
            "4",
            "--proj-hidden",
            "16",
            "--proj-out",
            "16",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--knn-every",
            "0",
            "--out",
            str(out),
            "--no-progress",
            "--no-tensorboard",
        )
        if r.returncode != 0:
            raise RuntimeError(f"could not make a checkpoint: {r.stderr[-2000:]}")
        _CKPT["path"] = out / "checkpoint.pt"
    return _CKPT["path"]


_TMP = Path(tempfile.mkdtemp(prefix="sslfast-audit-"))

for _label, _args, _cmd, _tokens in [
    ("train --method nope", ["train", "--method", "nope"], "train", ("nope",)),
    ("train --device cuda (CPU torch)", ["train", "--device", "cuda"], "train", ("cuda",)),
    ("train --backbone vit_tiny --width 4", ["train", "--backbone", "vit_tiny", "--width", "4"], "train", ("width",)),
    ("train --lr nan", ["train", "--lr", "nan"], "train", ("lr",)),
    ("eval --checkpoint missing.pt", ["eval", "--checkpoint", str(_TMP / "missing.pt")], "eval", ("missing.pt",)),
    (
        "report --results missing/",
        ["report", "--results", str(_TMP / "nothing"), "--out", str(_TMP / "rep"), "--no-readme"],
        "report",
        ("nothing",),
    ),
]:

    @case("CLI", _label)
    def _cli_case(args=_args, cmd=_cmd, tokens=_tokens):
        extra = ["--out", str(_TMP / "out"), "--data", "synthetic"] if cmd == "train" else []
        return _cli_verdict(_cli(*args, *extra), cmd, *tokens)


for _label, _yaml, _tokens in [
    ("train YAML lr: .inf", "lr: .inf\n", ("lr",)),
    ("train YAML broken syntax", "method: [vicreg\n", ("cfg.yaml",)),
    ("train YAML !!python/object tag", "method: !!python/object/apply:os.system ['true']\n", ("cfg.yaml",)),
    ("train YAML not a mapping", "- 1\n- 2\n", ("cfg.yaml",)),
]:

    @case("CLI", _label)
    def _yaml_case(text=_yaml, tokens=_tokens):
        cfg = _TMP / "cfg.yaml"
        cfg.write_text(text)
        return _cli_verdict(_cli("train", "--config", str(cfg), "--out", str(_TMP / "out")), "train", *tokens)


for _label, _extra, _tokens in [
    ("eval --k 0", ["--k", "0"], ("--k",)),
    ("eval --train-size -3", ["--train-size", "-3"], ("--train-size",)),
    ("eval --test-size 0", ["--test-size", "0"], ("--test-size",)),
    ("eval --temperature -1", ["--temperature", "-1"], ("--temperature",)),
    ("eval --temperature inf", ["--temperature", "inf"], ("--temperature",)),
    ("eval --batch-size 0", ["--batch-size", "0"], ("--batch-size",)),
]:

    @case("CLI", _label)
    def _eval_case(extra=_extra, tokens=_tokens):
        ckpt = _checkpoint(_TMP)
        return _cli_verdict(_cli("eval", "--checkpoint", str(ckpt), "--data", "synthetic", *extra), "eval", *tokens)


@case("CLI", "eval of a checkpoint holding {'format': 1}")
def _eval_format_only():
    p = _TMP / "format_only.pt"
    torch.save({"format": 1}, p)
    return _cli_verdict(_cli("eval", "--checkpoint", str(p)), "eval", "format_only.pt")


@case("CLI", "eval of a checkpoint with config but no method/epoch keys")
def _eval_partial():
    ckpt = torch.load(_checkpoint(_TMP), weights_only=True)
    for k in ("method", "backbone", "epoch", "step"):
        ckpt.pop(k, None)
    p = _TMP / "partial.pt"
    torch.save(ckpt, p)
    out = _cli(
        "eval", "--checkpoint", str(p), "--data", "synthetic", "--train-size", "32", "--test-size", "16", "--k", "5"
    )
    if out.returncode == 0:
        return OK, "evaluated"
    return _cli_verdict(out, "eval", "partial.pt")


@case("CLI", "eval --train-size -3 is never used as a slice")
def _eval_neg_size():
    ckpt = _checkpoint(_TMP)
    out = _cli("eval", "--checkpoint", str(ckpt), "--data", "synthetic", "--train-size", "-3", "--k", "5")
    if out.returncode == 0:
        n = json.loads(out.stdout).get("n_train")
        return WRONG, f"accepted: n_train={n}"
    return _cli_verdict(out, "eval", "--train-size")


# ---------------------------------------------------------------------------------------------
# distributed
# ---------------------------------------------------------------------------------------------


@case("distributed", "default collective timeout <= 180 s")
def _timeout_default():
    import dataclasses

    from sslfast.train.config import TrainConfig

    default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}["dist_timeout_s"]
    return (OK if default <= 180 else WRONG), f"dist_timeout_s default {default} s"


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="run only rows whose name contains this")
    p.add_argument("--json", default=None, help="write every case's verdict here")
    args = p.parse_args(argv)
    results = []
    for row, name, fn in CASES:
        if args.only and args.only not in row and args.only not in name:
            continue
        try:
            verdict, detail = fn()
        except Exception:  # noqa: BLE001 - an audit harness failure is reported, not hidden
            verdict, detail = "harness-error", traceback.format_exc(limit=3).strip().splitlines()[-1]
        results.append({"row": row, "case": name, "verdict": verdict, "detail": detail})
        print(f"[{verdict:>12}] {row}: {name}: {detail}", flush=True)
    print()
    for scope in ("this branch", "item 2"):
        sel = [r for r in results if r["row"].startswith("item 2") == (scope == "item 2")]
        counts = Counter(r["verdict"] for r in sel)
        print(f"{scope}: {len(sel)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
