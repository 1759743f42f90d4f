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
from pathlib import Path
from typing import Any

__all__ = ["field_docs", "add_dataclass_arguments", "dataclass_from_args", "config_hash", "dataclass_from_dict",
           "check_setting", "check_settings", "FieldSpec", "field_specs", "add_field_arguments", "read_field_specs",
           "read_module_constant", "SourceUnreadable"]


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


@functools.lru_cache(maxsize=None)
def _resolve_types(cls: type) -> types.MappingProxyType:
    """The field types of dataclass ``cls`` (read-only, resolved once: resolving them took 60% of
    checking a batch's scenes, 20 of 33 s for 2000 scenes)."""
    return types.MappingProxyType(typing.get_type_hints(cls))


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
        # Only a word clears a setting: an empty value is more often a variable that was not set
        # (--image "$PHOTO") than a wish for none, and --image "" quietly dreamed from the prompt.
        if not text.strip():
            raise argparse.ArgumentTypeError("is empty; give a value, or 'none' to leave it unset")
        return None if text.strip().lower() in ("none", "null") else parse(text)
    inner.__name__ = getattr(parse, "__name__", "value")
    return inner


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What a command-line option needs of one dataclass field: its name, type (the evaluated
    annotation), default (None when it has none) and docstring."""

    name: str
    type: Any
    default: Any
    doc: str


def field_specs(cls: type) -> list[FieldSpec]:
    """The :class:`FieldSpec` of every field of dataclass ``cls``."""
    docs = field_docs(cls)
    hints = _resolve_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        out.append(FieldSpec(f.name, hints[f.name], default, docs.get(f.name, "")))
    return out


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                            prefix: str = "", exclude: tuple[str, ...] = (),
                            renames: dict[str, str] | None = None) -> None:
    """Add one ``--option`` per field of ``cls`` (default: ``argparse.SUPPRESS``, so that only the
    options a person typed override the config)."""
    add_field_arguments(parser, field_specs(cls), prefix=prefix, exclude=exclude, renames=renames)


def add_field_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, specs: list[FieldSpec], *,
                        prefix: str = "", exclude: tuple[str, ...] = (), renames: dict[str, str] | None = None,
                        default_notes: dict[str, str] | None = None) -> None:
    """:func:`add_dataclass_arguments` for fields given as :class:`FieldSpec` (from the class, or
    read from its source by :func:`read_field_specs`). ``default_notes`` replaces the
    "(default: ...)" of the named fields (e.g. a default that depends on the machine)."""
    renames, notes = renames or {}, default_notes or {}
    for f in specs:
        if f.name in exclude or f.name.startswith("_"):
            continue
        flag = "--" + renames.get(f.name, prefix + f.name).replace("_", "-")
        tp, optional = _base_type(f.type)
        note = notes.get(f.name, f"default: {f.default!r}")
        help_text = f"{f.doc} ({note})" if f.doc else f"({note})"
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


# ------------------------------------------------------------------------------------------------
# Reading dataclasses from their source, without importing their modules
# ------------------------------------------------------------------------------------------------
class SourceUnreadable(Exception):
    """A dataclass (or constant) the source reader cannot evaluate without importing its module
    (a default computed by a call, a base class, an unknown name in an annotation)."""


_TYPE_NAMES = {**{n: getattr(typing, n) for n in ("Any", "Literal", "Optional", "Union", "Callable", "Sequence")},
               **{t.__name__: t for t in (int, float, str, bool, bytes, tuple, list, dict, set, frozenset)},
               "None": None}


@functools.lru_cache(maxsize=None)
def _module_source(module: str) -> ast.Module:
    """The parsed source of ``module`` (a module of this project's packages), found without importing it."""
    import importlib.util

    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnreadable(f"{top} is not a package")
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest.split(".")) if rest else \
        Path(list(spec.submodule_search_locations)[0])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return ast.parse(path.read_text(encoding="utf-8"))
    raise SourceUnreadable(f"no source for {module}")


def _module_constant(module: str, name: str, depth: int = 0) -> Any:
    """The value of the module-level constant ``name`` of ``module`` (a literal, another
    constant, or one imported with ``from X import name``)."""
    if depth > 8:
        raise SourceUnreadable(f"{module}.{name}: constants refer to each other too deeply")
    value_node = None
    for node in _module_source(module).body:  # the last assignment wins, as when the module runs
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value_node = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            value_node = node.value
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    value_node = ("import", node.module, alias.name)
    if value_node is None:
        raise SourceUnreadable(f"{module}.{name} is not a module-level constant")
    if isinstance(value_node, tuple):
        return _module_constant(value_node[1], value_node[2], depth + 1)
    return _static_value(value_node, module, depth + 1)


def _static_value(node: ast.AST, module: str, depth: int = 0) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Name):
        return _module_constant(module, node.id, depth)
    if isinstance(node, ast.Tuple):
        return tuple(_static_value(e, module, depth) for e in node.elts)
    raise SourceUnreadable(f"{module}: cannot read {ast.unparse(node)!r} without running the module")


def _static_default(node: ast.AST | None, module: str) -> Any:
    if node is None:
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "field":
        kw = {k.arg: k.value for k in node.keywords}
        if "default" in kw:
            return _static_value(kw["default"], module)
        factory = kw.get("default_factory")
        if isinstance(factory, ast.Name) and factory.id in ("tuple", "list", "dict"):
            return {"tuple": (), "list": [], "dict": {}}[factory.id]
        raise SourceUnreadable(f"{module}: a field's default_factory must be run to be known")
    return _static_value(node, module)


@functools.lru_cache(maxsize=None)
def _read_field_specs(module: str, class_name: str) -> tuple[FieldSpec, ...]:
    cls = next((n for n in _module_source(module).body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None:
        raise SourceUnreadable(f"{module} defines no class {class_name}")
    if cls.bases:
        raise SourceUnreadable(f"{module}.{class_name} has base classes")
    specs = []
    body = cls.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        annotation = ast.unparse(node.annotation)
        if "ClassVar" in annotation:
            continue
        try:
            tp = eval(annotation, {"__builtins__": {}}, dict(_TYPE_NAMES))  # names of types only, no calls
        except Exception as e:  # an unknown name: the module's own types
            raise SourceUnreadable(f"{module}.{class_name}.{node.target.id}: annotation {annotation!r}: {e}") from None
        nxt = body[i + 1] if i + 1 < len(body) else None
        doc = ""
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            doc = " ".join(nxt.value.value.split())
        specs.append(FieldSpec(node.target.id, tp, _static_default(node.value, module), doc))
    return tuple(specs)


def read_field_specs(module: str, class_name: str) -> list[FieldSpec]:
    """The :class:`FieldSpec` of dataclass ``class_name`` of ``module``, read from its source
    without importing the module (so a ``--help`` need not load torch). Equal to
    ``field_specs(cls)`` for the dataclasses it can read (the tests check the project's); raises
    :class:`SourceUnreadable` for the others."""
    return list(_read_field_specs(module, class_name))


def read_module_constant(module: str, name: str) -> Any:
    """A module-level constant of ``module`` (a literal, or built of literals and other such
    constants), read from its source without importing it; :class:`SourceUnreadable` otherwise."""
    return _module_constant(module, name)


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
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
            value = int(value)  # JSON and YAML writers may write 512 as 512.0 (not 1e300: no one meant its digits)
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
        from dreamer.cli import quote_names

        raise ValueError(f"{where}: unknown setting(s) [{quote_names(unknown)}] for {cls.__name__}; "
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
