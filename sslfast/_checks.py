"""Input validation shared by every loss: clear errors instead of silent wrong numbers."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

import torch


def check_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, bfloat16, float16, float64), got {x.dtype}")
    return x


def check_matrix(x, name: str, min_rows: int = 2, middle: bool = False) -> torch.Tensor:
    """A (N, D) embedding batch with N >= ``min_rows`` and D >= 1; (N, ..., D) when ``middle``."""
    check_tensor(x, name)
    form = "(N, ..., D)" if middle else "(N, D)"
    if x.dim() != 2 and not (middle and x.dim() > 2):
        raise ValueError(f"{name} must have shape {form}, got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs N >= {min_rows} rows (batch statistics), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} needs D >= 1 columns (and no empty middle dimension), got shape {tuple(x.shape)}")
    return x


def check_pair(z_a, z_b, names: tuple[str, str] = ("z_a", "z_b"), min_rows: int = 2, middle: bool = False) -> None:
    """Two views of one batch: same shape, dtype and device. ``middle``: (N, ..., D) accepted."""
    check_matrix(z_a, names[0], min_rows, middle)
    check_matrix(z_b, names[1], min_rows, middle)
    if z_a.shape != z_b.shape:
        form = "(N, ..., D)" if middle else "(N, D)"
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape {form}, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.device != z_b.device:
        raise ValueError(f"{names[0]} and {names[1]} must be on the same device, got {z_a.device} and {z_b.device}")
    if z_a.dtype != z_b.dtype:
        raise TypeError(f"{names[0]} and {names[1]} must have the same dtype, got {z_a.dtype} and {z_b.dtype}")


def stack_views(z, name: str = "z", min_views: int = 1, min_batch: int = 1) -> torch.Tensor:
    """Accept a (V, B, D) tensor or a list of V tensors of shape (B, D); return (V, B, D)."""
    if isinstance(z, torch.Tensor):
        check_tensor(z, name)
        if z.dim() != 3:
            raise ValueError(
                f"{name} must be a (V, B, D) tensor or a list of (B, D) tensors, got shape {tuple(z.shape)}"
            )
        views = z
    elif isinstance(z, Sequence) and not isinstance(z, (str, bytes)):
        if len(z) == 0:
            raise ValueError(f"{name} must hold at least {min_views} views, got an empty list")
        for i, v in enumerate(z):
            check_tensor(v, f"{name}[{i}]")
            if v.dim() != 2:
                raise ValueError(f"{name}[{i}] must have shape (B, D), got shape {tuple(v.shape)}")
            if v.shape != z[0].shape:
                raise ValueError(
                    f"every view must share (B, D): {name}[0] has shape {tuple(z[0].shape)}, "
                    f"{name}[{i}] has shape {tuple(v.shape)}"
                )
            if v.device != z[0].device:
                raise ValueError(
                    f"every view must be on one device: {name}[0] on {z[0].device}, {name}[{i}] on {v.device}"
                )
            if v.dtype != z[0].dtype:
                raise TypeError(f"every view must share a dtype: {name}[0] is {z[0].dtype}, {name}[{i}] is {v.dtype}")
        views = torch.stack(list(z))
    else:
        raise TypeError(f"{name} must be a (V, B, D) tensor or a list of (B, D) tensors, got {type(z).__name__}")
    if views.shape[0] < min_views:
        raise ValueError(f"{name} needs V >= {min_views} views, got shape {tuple(views.shape)}")
    if views.shape[1] < min_batch:
        raise ValueError(f"{name} needs B >= {min_batch} samples per view, got shape {tuple(views.shape)}")
    if views.shape[2] < 1:
        raise ValueError(f"{name} needs D >= 1, got shape {tuple(views.shape)}")
    return views


# ---------------------------------------------------------------------------------------------
# Scalars: the one home of "must be a positive int"-style checks. Each returns the value (as a
# float for numbers) and raises a ValueError that names the argument, the value seen and the
# accepted range. bools are refused where numbers are expected (True is an int in Python).
# ---------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(value, name: str, *, min: int = 1, max: int | None = None, allow_none: bool = False):
    """An int in [min, max] (None too when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < min or (max is not None and value > max):
        what = (
            {0: "a non-negative int", 1: "a positive int"}.get(min, f"an int >= {min}")
            if max is None
            else (f"an int in [{min}, {max}]")
        )
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    return value


def check_number(
    value,
    name: str,
    *,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number in [min, max] (or (min, max] with ``min_open``); None when ``allow_none``."""
    if value is None and allow_none:
        return None
    ok = _is_number(value) and math.isfinite(value)
    if ok and min is not None:
        ok = value > min if min_open else value >= min
    if ok and max is not None:
        ok = value <= max
    if not ok:
        lo = "" if min is None else (f" > {min:g}" if min_open else f" >= {min:g}")
        hi = "" if max is None else f" <= {max:g}"
        rng = " and".join(x for x in (lo, hi) if x)
        raise ValueError(f"{name} must be a finite number{rng}{' or None' if allow_none else ''}, got {value!r}")
    return float(value)


def check_prob(value, name: str) -> float:
    """A number in [0, 1]."""
    if not (_is_number(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}{_why_not(value)}")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    """One of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _why_not(value) -> str:
    """What is wrong with a number that failed a range check, beyond its value."""
    if _is_number(value) and not math.isfinite(value):
        return " (NaN and infinities are refused)"
    if not _is_number(value):
        return f" ({type(value).__name__}, not a number)"
    return ""


def check_positive(value, name: str) -> float:
    """A finite number > 0."""
    if not (_is_number(value) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}{_why_not(value)}")
    return float(value)


def check_nonnegative(value, name: str) -> float:
    """A finite number >= 0."""
    if not (_is_number(value) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}{_why_not(value)}")
    return float(value)


def check_bool(value, name: str) -> bool:
    """A real bool (not a truthy string such as ``"no"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_temperature(value, name: str = "temperature") -> float:
    """A softmax temperature: a finite number > 0.

    Negative temperatures are refused on purpose (lightly accepts them): ``s/T`` with T < 0 flips
    the sign of every logit, so minimising the loss pushes positive pairs *apart* — the opposite of
    the objective, with no error and a plausible-looking loss curve.
    """
    if _is_number(value) and math.isfinite(value) and value < 0:
        raise ValueError(
            f"{name} must be a positive number, got {value!r}: a negative temperature flips the sign of "
            "every logit, so minimising the loss would push positive pairs apart (lightly accepts it; "
            "sslfast refuses it, see README 'Differences from lightly')"
        )
    return check_positive(value, name)


# ---------------------------------------------------------------------------------------------
# Evaluation inputs
# ---------------------------------------------------------------------------------------------


def check_labels(y, name: str, n: int, n_name: str) -> torch.Tensor:
    """(N,) integer class indices matching ``n`` rows of ``n_name``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but {n_name} has {n} rows")
    return y


def check_features(x, name: str) -> torch.Tensor:
    """A non-empty (N, D) floating-point feature matrix."""
    check_tensor(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got a {x.dim()}-d tensor of shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty (N, D), got shape {tuple(x.shape)}")
    return x


def check_num_classes(value, *labels: torch.Tensor) -> int:
    """``value`` checked against the labels (all < value, none negative); None: max label + 1."""
    lo = min(int(y.min()) for y in labels)
    hi = max(int(y.max()) for y in labels)
    if lo < 0:
        raise ValueError(f"labels must be >= 0, got a minimum of {lo}")
    if value is None:
        return hi + 1
    check_int(value, "num_classes")
    if hi >= value:
        raise ValueError(f"labels must be < num_classes={value}, got a maximum of {hi}")
    return value


# ---------------------------------------------------------------------------------------------
# Command-line flags: the same checks as argparse types, so a bad value is reported by argparse
# as "sslfast <cmd>: error: argument --k: must be a positive int, got 0" (exit status 2).
# ---------------------------------------------------------------------------------------------

_FLAG = "\0flag"


def arg_type(convert: Callable, check: Callable, **kw) -> Callable[[str], object]:
    """An argparse ``type=``: ``convert`` the text (int, float), then ``check(value, name, **kw)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            kind = getattr(convert, "__name__", "a value")
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        try:
            return check(value, _FLAG, **kw)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(str(e).replace(f"{_FLAG} ", "")) from None

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its messages
    return parse
