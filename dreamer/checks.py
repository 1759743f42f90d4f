"""One vocabulary for input checks: shapes with named dimensions, dtypes, finite values, settings.

Every public function of the project checks its inputs with these helpers, so a wrong input
fails the same way wherever it enters: ``TypeError`` when the kind of object is wrong (a list
where a tensor belongs, a float where an integer belongs), ``ValueError`` when the object is of
the right kind but its value is not (a shape, a dtype, a NaN, a number out of range). Messages
read ``<name> must be <what is expected>, got <what came>``, and callers add the fix where one
is not obvious. Checks raise; they never ``assert`` (``python -O`` removes asserts).

Shapes are written as lists of dimensions: an ``int`` is an exact size, a string names a size
that must agree everywhere it appears (in one call, and across calls through ``sizes``), and
``"*"`` (first only) stands for any number of leading dimensions::

    sizes = check_shape(image, "image", ["H", "W", 3])            # {"H": 512, "W": 512}
    check_shape(depth, "depth", ["H", "W"], sizes=sizes)            # must match the image
    check_shape(stack, "stack", ["N", "C", "H", "W"])

Pure Python and torch: this module imports nothing else from the project, so any package
(``alignment``, ``zoom``) can use it.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

__all__ = [
    "check_tensor",
    "check_shape",
    "check_dtype",
    "check_finite",
    "check_positive",
    "check_int",
    "check_number",
    "check_choice",
    "check_text",
    "check_image",
    "check_map",
    "check_mask",
    "check_depth",
]

Dim = int | str


def _fmt_dims(dims: Sequence[Dim]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def check_tensor(x: Any, name: str, dims: Sequence[Dim] | None = None) -> Tensor:
    """Raise TypeError unless ``x`` is a ``torch.Tensor``; return it. ``dims`` only shapes the message."""
    if not isinstance(x, Tensor):
        shape = f" {_fmt_dims(dims)}" if dims else ""
        raise TypeError(f"{name} must be a torch.Tensor{shape}, got {type(x).__name__}")
    return x


def check_shape(x: Any, name: str, dims: Sequence[Dim], *, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Check that tensor ``x`` has the shape ``dims`` (see the module docstring); return the named sizes.

    ``sizes`` holds sizes already known (e.g. from another input); they must agree, and the
    returned dict includes them.
    """
    check_tensor(x, name, dims)
    dims = list(dims)
    bound = dict(sizes or {})
    shape = tuple(x.shape)
    if dims and dims[0] == "*":
        dims = dims[1:]
        if len(shape) < len(dims):
            raise ValueError(f"{name} must have shape [...,{_fmt_dims(dims)[1:]}, got {shape}")
        shape = shape[len(shape) - len(dims):]
    elif len(shape) != len(dims):
        raise ValueError(f"{name} must have shape {_fmt_dims(dims)}, got {tuple(x.shape)}")
    for dim, size in zip(dims, shape):
        if isinstance(dim, str):
            if dim in bound and bound[dim] != size:
                raise ValueError(f"{name} must have shape {_fmt_dims(dims)} with {dim}={bound[dim]} "
                                 f"(like the other inputs), got {tuple(x.shape)}")
            bound[dim] = size
        elif size != dim:
            raise ValueError(f"{name} must have shape {_fmt_dims(dims)}, got {tuple(x.shape)}")
    return bound


_KINDS = {
    "float": (Tensor.is_floating_point, "a float tensor"),
    "bool": (lambda t: t.dtype == torch.bool, "a bool tensor"),
    "int": (lambda t: not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool, "an integer tensor"),
}


def check_dtype(x: Tensor, name: str, kind: str | torch.dtype) -> Tensor:
    """Check the dtype of tensor ``x``: a kind (``"float"``, ``"bool"``, ``"int"``) or an exact dtype."""
    check_tensor(x, name)
    if isinstance(kind, torch.dtype):
        if x.dtype != kind:
            raise ValueError(f"{name} must have dtype {kind}, got {x.dtype}")
        return x
    test, words = _KINDS[kind]
    if not test(x):
        raise ValueError(f"{name} must be {words}, got dtype {x.dtype}")
    return x


def _select(x: Tensor, where: Tensor | None) -> Tensor:
    return x if where is None else x[where.to(x.device)]


def check_finite(x: Tensor, name: str, *, where: Tensor | None = None, where_name: str = "") -> Tensor:
    """Raise ValueError if ``x`` has NaN or inf (on the pixels ``where``, a bool mask, when given)."""
    bad = ~torch.isfinite(_select(x, where))
    if bool(bad.any()):
        at = f" on {where_name}" if where_name else ""
        raise ValueError(f"{name} must be finite{at}, got {int(bad.sum())} NaN/inf values")
    return x


def check_positive(x: Tensor, name: str, *, where: Tensor | None = None, where_name: str = "") -> Tensor:
    """Raise ValueError unless ``x`` is finite and > 0 (on ``where`` when given)."""
    # One dense reduction (no gather of the masked values) when all is well; the messages below.
    if x.numel() and x.is_floating_point():
        # A pixel outside ``where`` counts as 1; aminmax propagates NaN (it fails ``lo > 0``).
        lo, hi = torch.aminmax(x if where is None else torch.where(where.to(device=x.device, dtype=torch.bool),
                                                                   x, torch.ones((), dtype=x.dtype, device=x.device)))
        if bool((lo > 0) & (hi < math.inf)):
            return x
    else:
        bad = ~((x > 0) & (x < math.inf))  # NaN fails both comparisons
        if where is not None:
            bad &= where.to(device=x.device, dtype=torch.bool)
        if not bool(bad.any()):
            return x
    check_finite(x, name, where=where, where_name=where_name)
    values = _select(x, where)
    nonpos = values <= 0
    if bool(nonpos.any()):
        at = f" on {where_name}" if where_name else ""
        raise ValueError(f"{name} must be > 0{at}, got {int(nonpos.sum())} values <= 0 "
                         f"(min {float(values.min()):.4g})")
    return x


def _num(v: float) -> str:
    return str(v) if isinstance(v, numbers.Integral) else f"{v:g}"


def _range_words(minimum: float | None, maximum: float | None, open_min: bool = False) -> str:
    lo = None if minimum is None else f"{'>' if open_min else '>='} {_num(minimum)}"
    hi = None if maximum is None else f"<= {_num(maximum)}"
    return " and ".join(w for w in (lo, hi) if w)


def check_int(value: Any, name: str, *, min: int | None = None, max: int | None = None) -> int:
    """An integer setting (a Python or numpy integer, not a bool) in [min, max]; returns an ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        rng = _range_words(min, max)
        raise TypeError(f"{name} must be an integer{' ' + rng if rng else ''}, got {value!r}")
    value = int(value)
    if (min is not None and value < min) or (max is not None and value > max):
        raise ValueError(f"{name} must be an integer {_range_words(min, max)}, got {value}")
    return value


def check_number(value: Any, name: str, *, min: float | None = None, max: float | None = None,
                 open_min: bool = False) -> float:
    """A finite real number (not a bool) in [min, max] (``open_min``: > min); returns a ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = min is not None and (value <= min if open_min else value < min)
    too_high = max is not None and value > max
    if not math.isfinite(value) or too_low or too_high:
        rng = _range_words(min, max, open_min)
        raise ValueError(f"{name} must be a finite number{' ' + rng if rng else ''}, got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` must be one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


# Control characters (Unicode category Cc: C0, DEL, C1) other than tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(value: Any, name: str) -> str:
    """Raise TypeError unless ``value`` is a str, ValueError if it holds a control character other
    than tab and line breaks (a NUL, an escape sequence: a file's encoding gone wrong or a stray
    paste, which a prompt would carry into the models, the logs and the terminal); return it.
    The message gives the character and, for text of several lines, its line."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be text (a str), got {type(value).__name__}")
    bad = _CONTROL.search(value)
    if bad is not None:
        i = bad.start()
        line = value.count("\n", 0, i) + 1
        where = f"line {line}, character {i - value.rfind(chr(10), 0, i)}" if "\n" in value else f"character {i + 1}"
        raise ValueError(f"{name} must be text without control characters (tabs and line breaks are fine), got "
                         f"{bad.group()!r} (U+{ord(bad.group()):04X}) at {where}")
    return value


def _size_dims(height: int | None, width: int | None) -> dict[str, int]:
    return {k: v for k, v in (("H", height), ("W", width)) if v is not None}


def check_image(x: Any, name: str = "image", *, height: int | None = None, width: int | None = None) -> Tensor:
    """A float image [H,W,3] (values are not range-checked), of ``height`` x ``width`` when given."""
    check_shape(x, name, ["H", "W", 3], sizes=_size_dims(height, width))
    return check_dtype(x, name, "float")


def _map_sizes(height: int | None, width: int | None, shape: Sequence[int] | None) -> dict[str, int]:
    if shape is not None:
        height, width = shape
    return _size_dims(height, width)


def check_map(x: Any, name: str, *, height: int | None = None, width: int | None = None,
              shape: Sequence[int] | None = None) -> Tensor:
    """A float map [H,W] (depth, log-ratio, weights), of ``height`` x ``width`` (or ``shape``, the
    (H, W) of another map) when given."""
    check_shape(x, name, ["H", "W"], sizes=_map_sizes(height, width, shape))
    return check_dtype(x, name, "float")


def check_mask(x: Any, name: str, *, height: int | None = None, width: int | None = None,
               shape: Sequence[int] | None = None) -> Tensor:
    """A bool mask [H,W], of ``height`` x ``width`` (or ``shape``, as for :func:`check_map`) when given."""
    check_shape(x, name, ["H", "W"], sizes=_map_sizes(height, width, shape))
    return check_dtype(x, name, "bool")


def check_depth(x: Any, name: str = "depth", *, height: int | None = None, width: int | None = None,
                where: Tensor | None = None, where_name: str = "") -> Tensor:
    """A z-depth map: float [H,W], finite and > 0 (on ``where`` when given)."""
    check_map(x, name, height=height, width=width)
    return check_positive(x, name, where=where, where_name=where_name)
