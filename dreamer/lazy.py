"""Packages whose public names are imported on first use (PEP 562), so that a command line's
``--help`` or a light submodule does not pay for torch and the models' libraries."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Iterable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: dict[str, str],
                 public: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: name ``n`` is imported from module
    ``homes[n]`` on first use and then kept in the package's namespace (later look-ups skip this)."""
    public = set(public)

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | public)

    return __getattr__, __dir__
