"""File serving: the app serves only the files it handed to a visitor.

The visitors' folders (``<out>/sessions/<session>/``) hold much that is never for the browser:
``run.log``, ``config.json``, checkpoints, uploads. They are not served at all: the app is
launched without ``allowed_paths``. A file a handler returns is first *handed out*: copied into
gradio's cache folder (the only place gradio serves files from, besides its own assets) under
``dreamer-<secret>/<content hash>/<name>``, where the secret is a random token of the visitor's
session that never leaves the server except inside these paths. Gradio then serves the copy at
``gradio_api/file=<path>`` and leaves it in place (it is in its cache already). When the visitor
leaves, their copies are deleted.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

from dreamer.io import file_sha256

__all__ = ["FileDesk"]

_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _digest(path: Path) -> str:
    return file_sha256(path)[:32]


class FileDesk:
    """Hands files out per session: :meth:`hand` copies a file into the served folder."""

    def __init__(self, served: str | Path | None = None):
        if served is None:
            from gradio.utils import get_upload_folder

            served = get_upload_folder()
        self.served = Path(served).resolve()
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}

    def _folder(self, session: str) -> Path:
        with self._lock:
            secret = self._secrets.setdefault(session, secrets.token_hex(16))
        return self.served / f"dreamer-{secret}"

    def hand(self, session: str, path: str | Path | None, name: str | None = None) -> str | None:
        """The served copy of ``path`` for ``session`` (None stays None), named ``name`` (default:
        the file's own name)."""
        if path is None:
            return None
        path = Path(path)
        name = name or path.name
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"name must use letters, digits, '.', '_' and '-' only, got {name!r}")
        target = self._folder(session) / _digest(path) / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return str(target)

    def hand_all(self, session: str, paths) -> list[str]:
        """:meth:`hand` for each path (or ``(path, name)`` pair), in order."""
        return [self.hand(session, *p) if isinstance(p, tuple) else self.hand(session, p) for p in paths]

    def forget(self, session: str) -> None:
        """Delete the session's copies (the visitor left)."""
        with self._lock:
            secret = self._secrets.pop(session, None)
        if secret is not None:
            shutil.rmtree(self.served / f"dreamer-{secret}", ignore_errors=True)

    @staticmethod
    def url(handed: str) -> str:
        """The URL of a handed-out file, relative to the page (so it works under any root path)."""
        return "gradio_api/file=" + quote(str(handed), safe="/")
