"""The procedural world's render cache: renders kept per exact camera, bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict

from torch import Tensor

from dreamer.cameras import Camera

__all__ = ["camera_key", "RenderCache"]


def camera_key(camera: Camera) -> tuple:
    """Exact identity of a camera's rays: intrinsics, pose, size and device."""
    return (camera.K.detach().cpu().numpy().tobytes(), camera.c2w.detach().cpu().numpy().tobytes(),
            camera.width, camera.height, str(camera.device))


class RenderCache:
    """A thread-safe least-recently-used map from keys to tensors (or tuples of tensors), bounded
    by the bytes of the tensors it holds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(value) -> int:
        tensors = [value] if isinstance(value, Tensor) else [getattr(value, f) for f in value.__dataclass_fields__]
        return sum(t.numel() * t.element_size() for t in tensors)

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        size = self._size(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._size(self._items.pop(key))
            if size > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def info(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "entries": len(self._items), "bytes": self._bytes}
