"""What the command lines (``python -m dreamer.run``, ``python -m zoom.run``) share about failing.

One rule for both: a bad input is one line on stderr that names it and says what to do, and exit
status :data:`EXIT_BAD_INPUT`; a run that started and failed is :data:`EXIT_FAILED`. ``-v`` adds
the Python traceback. Bad usage of the flags themselves (argparse) is one line as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_BAD_INPUT", "OneLineParser", "one_line", "report_bad_input", "parse_json",
           "literal_error", "shorten", "quote_names", "MAX_MESSAGE", "path_argument"]

#: A run (a scene, a zoom stack) started and failed.
EXIT_FAILED = 1
#: Bad usage or a bad input, found before any work.
EXIT_BAD_INPUT = 2


def path_argument(text: str) -> Path:
    """A path option's value (argparse's ``type``): not empty, as ``Path("")`` would quietly mean
    the current folder (and a variable that was not set gives one)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path")
    return Path(text)


class OneLineParser(argparse.ArgumentParser):
    """Bad usage is one line naming the option and pointing at ``--help``, not the whole usage text."""

    def error(self, message: str):  # argparse's hook
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {shorten(message)} (--help lists every option)\n")


#: The longest message a refusal prints: its input's values are quoted in it, and a value (a
#: preset name, a path) may be 200000 characters long.
MAX_MESSAGE = 2000


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text``, or its start and end around a note of how much was left out when it is longer
    than ``limit`` characters (the end keeps the message's hint)."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 4
    return f"{text[:head]} ... ({len(text) - head - tail} characters left out) ... {text[-tail:]}"


def one_line(error: BaseException) -> str:
    """An exception as one line: its message's lines joined (the type when it has none), at most
    :data:`MAX_MESSAGE` characters (:func:`shorten`)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return shorten(text) or type(error).__name__


def quote_names(names, limit: int = 8, width: int = 40) -> str:
    """Names (keys, settings) for a message: sorted, each quoted and cut at ``width`` characters,
    at most ``limit`` of them and a count of the rest ("'a', 'b' and 9998 more")."""
    names = sorted(str(n) for n in names)
    shown = [repr(n) if len(n) <= width else repr(n[:width]) + "..." for n in names[:limit]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def report_bad_input(prog: str, error: BaseException, verbose: bool) -> int:
    """Print a bad input as one line (after the traceback with ``-v``); return :data:`EXIT_BAD_INPUT`."""
    if verbose:
        traceback.print_exception(error)
    print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
    return EXIT_BAD_INPUT


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"the key {key!r} is given twice in one object")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """``json.loads(text)``; a ValueError whose message says why it is not JSON (where, a key given
    twice in one object, or that it is nested too deeply), for callers to prefix with the input's
    name. A UTF-8 byte order mark at the start is skipped (Windows editors write one)."""
    try:
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise ValueError(f"not valid: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as e:  # int() of a literal
        raise ValueError(f"not valid JSON: {literal_error(e)}") from None


def literal_error(error: ValueError) -> str:
    """Why a value of a JSON or YAML input could not be built, in the input's terms: int() of a
    literal longer than Python converts names sys.set_int_max_str_digits; a YAML date that is no
    date ("2024-13-45") only says "month must be in 1..12"."""
    if "integer string conversion" in str(error):
        return f"it holds an integer of more than {sys.get_int_max_str_digits()} digits"
    return f"{one_line(error)} (in a value read as a number, date or tag; quote it to keep it text)"
