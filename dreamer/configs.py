"""Config dataclasses <-> command line, JSON and a stable hash: one source of truth.

Every setting is a dataclass field with a docstring under it. The command line is generated
from the fields (``--grow-px`` for ``grow_px``), its help text is the field's docstring, and
the resolved configs are saved next to every output as JSON (and hashed, so a rerun with
another config never reuses stale files).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import textwrap
import types
import typing
from typing import Any

__all__ = ["field_docs", "add_dataclass_arguments", "dataclass_from_args", "config_hash", "dataclass_from_dict",
           "check_setting", "check_settings"]


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under each field of a dataclass (``x: int = 0`` then ``\"\"\"doc\"\"\"``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _resolve_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _optional(parse):
    def inner(text: str):
        return None if text.strip().lower() in ("none", "null", "") else parse(text)
    inner.__name__ = getattr(parse, "__name__", "value")
    return inner


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                            prefix: str = "", exclude: tuple[str, ...] = (),
                            renames: dict[str, str] | None = None) -> None:
    """Add one ``--option`` per field of ``cls`` (default: ``argparse.SUPPRESS``, so that only the
    options a person typed override the config)."""
    docs = field_docs(cls)
    hints = _resolve_types(cls)
    renames = renames or {}
    for f in dataclasses.fields(cls):
        if f.name in exclude or f.name.startswith("_"):
            continue
        flag = "--" + renames.get(f.name, prefix + f.name).replace("_", "-")
        tp, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_text = docs.get(f.name, "")
        help_text = f"{help_text} (default: {default!r})" if help_text else f"(default: {default!r})"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": prefix + f.name}
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs.update(type=_parse_bool, nargs="?", const=True, metavar="BOOL")
        elif origin in (list, tuple):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs.update(type=inner, nargs="+", metavar=getattr(inner, "__name__", "X").upper())
        elif typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            kwargs.update(type=type(choices[0]), choices=choices)
        elif tp in (int, float, str):
            kwargs.update(type=_optional(tp) if optional else tp, metavar=tp.__name__.upper())
        else:
            kwargs.update(type=str)
        parser.add_argument(flag, **kwargs)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, (list, tuple, dict)) else f"a {type(value).__name__} of {len(value)}"
    return text if len(text) <= limit else text[:limit] + "..."


def _type_words(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_words(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values"
    return getattr(tp, "__name__", str(tp))


def check_setting(name: str, value: Any, tp: Any) -> Any:
    """Check one setting against its field type (``int``, ``float``, ``str``, ``bool``, a
    ``Literal``, a ``tuple[X, ...]`` or fixed tuple, any of them ``| None``); lists become
    tuples. Returns the value to use. Raises TypeError (wrong kind) or ValueError (a choice or
    number out of range) naming the setting, through :mod:`dreamer.checks`."""
    from dreamer.checks import check_choice, check_int, check_number

    inner, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise TypeError(f"{name} must be {_type_words(inner)}, got None")
    origin = typing.get_origin(inner)
    if inner is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {_short(value)}")
    elif inner is int:
        value = check_int(value, name)
    elif inner is float:
        value = check_number(value, name)
    elif inner is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string (quote it in YAML), got {_short(value)}")
    elif origin is typing.Literal:
        check_choice(value, name, typing.get_args(inner))
    elif origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be {_type_words(inner)}, got {_short(value)}")
        args = typing.get_args(inner)
        if len(args) == 2 and args[1] is Ellipsis:
            value = tuple(check_setting(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
        elif args:
            if len(value) != len(args):
                raise ValueError(f"{name} must be a list of {len(args)} values, got {len(value)}")
            value = tuple(check_setting(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        else:
            value = tuple(value)
    return value


def check_settings(cls: type, values: dict[str, Any], *, where: str = "") -> dict[str, Any]:
    """:func:`check_setting` for each of ``values`` (fields of dataclass ``cls``); returns them
    checked (lists as tuples). Messages start with ``where``."""
    hints = _resolve_types(cls)
    out = {}
    for k, v in values.items():
        try:
            out[k] = check_setting(k, v, hints[k]) if k in hints else v
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {e}" if where else str(e)) from None
    return out


def dataclass_from_dict(cls: type, data: dict[str, Any], *, strict: bool = True, where: str = "config"):
    """Build ``cls`` from a dict (e.g. saved JSON); unknown keys are an error when ``strict``, and
    every value is checked against its field's type (:func:`check_settings`)."""
    if not isinstance(data, dict):
        raise TypeError(f"{where}: must be a mapping of settings, got {_short(data)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown and strict:
        raise ValueError(f"{where}: unknown setting(s) {sorted(unknown)} for {cls.__name__}; "
                         f"known: {sorted(names)}")
    kwargs = check_settings(cls, {k: v for k, v in data.items() if k in names}, where=where)
    return cls(**kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", base=None):
    """``base`` (or the defaults) updated with the fields that appear in ``args``."""
    base = base if base is not None else cls()
    updates = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if hasattr(args, key):
            value = getattr(args, key)
            current = getattr(base, f.name)
            if isinstance(current, tuple) and isinstance(value, list):
                value = tuple(value)
            updates[f.name] = value
    return dataclasses.replace(base, **updates)


def config_hash(*configs: Any) -> str:
    """A short stable hash of dataclasses / dicts (sorted JSON)."""
    payload = [dataclasses.asdict(c) if dataclasses.is_dataclass(c) else c for c in configs]
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
