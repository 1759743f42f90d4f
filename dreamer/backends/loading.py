"""One place that loads model weights: device and dtype defaults, and clear failures.

Every learned backend (diffusers pipelines, transformers depth models, the zoom sampler's UNet)
loads through :func:`load_pretrained`. A model is named by a hub id (``"org/name"``) or a local
folder (anything that exists on disk, or that starts with ``/``, ``.``, ``~`` or holds a
backslash or more than one ``/``).

Loading never waits on a network that is not there:

* a local folder is read as it is (``local_files_only``); a missing or incomplete folder fails;
* a hub id is first looked up in the local Hugging Face cache only; when it is not there and
  ``HF_HUB_OFFLINE`` is set, loading fails at once; otherwise it is downloaded.

Failures raise :class:`ModelNotAvailable` with the id, where it was looked for and how to fix it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "ModelNotAvailable",
    "resolve_device",
    "default_dtype",
    "resolve_dtype",
    "hub_offline",
    "hub_cache_dir",
    "is_local_model",
    "load_pretrained",
    "quiet_model_loading",
]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


class ModelNotAvailable(RuntimeError):
    """A model's weights cannot be had here: not cached and no network, or a bad local folder.

    ``model`` is the id or folder that was asked for; ``str(error)`` says where it was looked for
    and how to make it available.
    """

    def __init__(self, message: str, *, model: str):
        super().__init__(message)
        self.model = model


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"auto"`` -> ``cuda`` when a GPU is usable, else ``cpu``; anything else as
    ``torch.device`` reads it (``"cpu"``, ``"cuda:1"``, ``"mps"``). A CUDA device asked for on a
    machine without one raises ``ValueError``."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s) here "
                         f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); use 'auto', 'cuda' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} asked for, but torch sees no Apple GPU (MPS) here; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return dev


def default_dtype(device: str | torch.device | None) -> torch.dtype:
    """float16 on CUDA (half the memory, the speed of tensor cores), float32 elsewhere (CPU
    kernels in half precision are slow or missing)."""
    return torch.float16 if resolve_device(device).type == "cuda" else torch.float32


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None) -> torch.dtype:
    """``None`` / ``"auto"`` -> :func:`default_dtype`; a name (``"float16"``, ``"fp16"``,
    ``"bfloat16"``, ``"float32"``) or a ``torch.dtype`` as given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype.strip().lower() == "auto":
        return default_dtype(device)
    key = dtype.strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected 'auto', 'float32', 'float16' or 'bfloat16'")
    return _DTYPES[key]


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: the hub is never asked."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> str:
    """The folder where Hugging Face keeps downloaded models (``HF_HUB_CACHE``, or
    ``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``), read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def is_local_model(model: str) -> bool:
    """True when ``model`` names a folder rather than a hub id (see the module docstring)."""
    if os.path.exists(os.path.expanduser(model)):
        return True
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def _fix_hint(model: str) -> str:
    return (f"To fix: on a machine with network run `huggingface-cli download {model}` (or "
            f"`hf download {model}`) and copy the cache folder here (or set HF_HOME / HF_HUB_CACHE "
            f"to where it lies), or download it to a folder and pass that folder instead of the "
            f"id. Use the 'tiny' or 'synthetic' model set to run without weights.")


def _availability_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub import errors as hub_errors

        errors.append(hub_errors.HfHubHTTPError)
    except (ImportError, AttributeError):  # pragma: no cover - older huggingface_hub
        pass
    return tuple(errors)


# Notices libraries print while a model is built that say nothing about the run: transformers
# reports that it uses the PIL image processors because torchvision is not installed (it is kept
# out on purpose; they work), and diffusers' config loader passes huggingface_hub an argument it
# deprecated (local_dir_use_symlinks="auto", diffusers' own default, not ours).
_TRANSFORMERS_NOTICES = ("requires torchvision (not installed); falling back to",)
_HUB_DEPRECATION = r"The `local_dir_use_symlinks` argument is deprecated"


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in _TRANSFORMERS_NOTICES)


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Build models inside this block to drop the libraries' notices that say nothing about the
    run (the torchvision fallback of transformers' image processors, huggingface_hub's deprecation
    of an argument diffusers passes). Only those messages, only while the block runs; every other
    warning and log record goes through as usual."""
    notices = logging.getLogger("transformers.utils.import_utils")
    drop = _DropNotices()
    notices.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_HUB_DEPRECATION, category=UserWarning)
            yield
    finally:
        notices.removeFilter(drop)


def load_pretrained(loader: Callable[..., T], model: str, *, what: str = "model", **kwargs: Any) -> T:
    """Call ``loader(model, **kwargs)`` (a ``from_pretrained``) without hanging and with a clear
    failure.

    ``loader``: e.g. ``StableDiffusionInpaintPipeline.from_pretrained`` or
    ``AutoModelForDepthEstimation.from_pretrained``. ``what`` names the model in messages
    ("inpainting pipeline", "depth model"). Extra ``kwargs`` go to the loader.

    A local folder loads with ``local_files_only=True``. A hub id loads from the cache first; if it
    is not cached it is downloaded, unless ``HF_HUB_OFFLINE`` is set. Raises
    :class:`ModelNotAvailable` (with the original error chained) when none of that works.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"a model id or folder must be a non-empty string, got {model!r}")
    model = model.strip()
    errors = _availability_errors()
    if is_local_model(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelNotAvailable(
                f"the {what} folder {str(path)!r} does not exist (or is not a folder). Pass a folder "
                f"written by save_pretrained / `huggingface-cli download ID --local-dir FOLDER`, "
                f"or a hub id such as 'org/name'. Use the 'tiny' or 'synthetic' model set to run "
                f"without weights.", model=model)
        try:
            with quiet_model_loading():
                return loader(str(path), local_files_only=True, **kwargs)
        except errors as e:
            raise ModelNotAvailable(
                f"the {what} folder {str(path)!r} exists but does not hold a loadable {what} "
                f"({type(e).__name__}: {_first_line(e)}). Check that it is complete (a "
                f"save_pretrained folder or a full `huggingface-cli download ... --local-dir` copy).",
                model=model) from e

    offline = hub_offline()
    try:
        with quiet_model_loading():
            return loader(model, local_files_only=True, **kwargs)
    except errors as cached_error:
        if offline:
            raise ModelNotAvailable(
                f"the {what} {model!r} is not in the Hugging Face cache ({hub_cache_dir()}) and "
                f"HF_HUB_OFFLINE is set, so it was not downloaded. {_fix_hint(model)}",
                model=model) from cached_error
        logger.info("%s %r is not cached (%s); downloading it", what, model, _first_line(cached_error))
        unreachable = _hub_unreachable()
        if unreachable:
            raise ModelNotAvailable(
                f"the {what} {model!r} is not in the Hugging Face cache ({hub_cache_dir()}) and the hub "
                f"cannot be reached from here ({unreachable}). {_fix_hint(model)} Set HF_HUB_OFFLINE=1 to "
                f"skip this check.", model=model) from cached_error
    try:
        with quiet_model_loading():
            return loader(model, **kwargs)
    except errors as e:
        raise ModelNotAvailable(
            f"the {what} {model!r} could not be loaded from the Hugging Face hub nor found in the "
            f"cache ({hub_cache_dir()}): {type(e).__name__}: {_first_line(e)}. Check the id (and, "
            f"for gated models, your access token). {_fix_hint(model)}", model=model) from e


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (a DNS or TCP failure within ``timeout`` seconds), or None.

    huggingface_hub retries a dead network for tens of seconds; this probe makes that fail at
    once. It is skipped (None) when a proxy is configured, since a direct connection would not
    tell."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host}:{port}: {e}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
