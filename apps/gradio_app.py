"""The web app: a prompt or a photo in, an explorable 3D scene out; and Powers-of-Ten zooms.

    python -m apps.gradio_app                         # http://127.0.0.1:7860, real models
    python -m apps.gradio_app --models synthetic      # offline: the procedural world, no weights
    python -m apps.gradio_app --port 8000 --concurrency 2 --out runs/app

Tabs:
  Scene    text and/or a photo -> dreamed views, Gaussian splats in a 3D viewer (drag to orbit,
           W A S D to walk), fly-through and depth videos, downloads. "Dream here" dreams what
           the viewer looks at on top of the scene and fine-tunes its splats; Undo takes it back.
           The form starts with the machine's settings: small on a CPU (a scene in minutes), the
           real ones on a GPU (apps/settings.py).
  Zoom     prompts per level -> a zoom stack and its video.
  3D zoom  one of your scenes, a view and a point -> the zoom levels lifted into the scene,
           its splats retrained, a fly-in video.

Each visitor gets a folder of their own (<out>/sessions/<session>/) and per-session state; the
model weights are loaded once per process and shared. Work goes through a queue: --concurrency
jobs run at once (default 1, all tabs together), the others see their queue position; one visitor
runs one job at a time, and a job stops after --max-job-minutes. Inputs are checked before any
work starts; a failed or stopped run shows a readable message and the app stays usable. Only the
files a visitor was handed are served.
"""

from __future__ import annotations

import os

# Set before gradio is imported: otherwise it reports usage to outside hosts.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import argparse  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from apps.inputs import Limits  # noqa: E402
from apps.settings import MODEL_SETS, AppSettings  # noqa: E402

__all__ = ["AppSettings", "build_app", "build_parser", "main"]

log = logging.getLogger("apps.gradio_app")


def build_app(settings: AppSettings):
    """The gradio Blocks of the app (not launched): see :mod:`apps.layout`."""
    from apps.layout import build_app as _build

    return _build(settings)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m apps.gradio_app", description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    ap.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ap.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    ap.add_argument("--models", choices=MODEL_SETS, default="default",
                    help="model set preselected in the page (default: the real models; synthetic/tiny need no weights)")
    ap.add_argument("--concurrency", type=int, default=1, help="jobs that run at once; the rest queue (default 1)")
    ap.add_argument("--max-queue", type=int, default=32, help="most jobs waiting in the queue (default 32)")
    ap.add_argument("--max-job-minutes", type=float, default=60.0,
                    help="longest a job may run before it is stopped (default 60)")
    ap.add_argument("--out", type=Path, default=Path("runs/app"), help="root of the visitors' folders")
    ap.add_argument("--keep-outputs", action="store_true", help="keep a visitor's folder after they leave")
    ap.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload in MB (default 25)")
    ap.add_argument("--showcase", action="store_true",
                    help="run the first Scene example whenever a page opens (for screenshots)")
    ap.add_argument("--preload", action="store_true", help="load the preselected models before serving")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads torch may use (default: torch's own; 1-2 on a shared machine)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.concurrency < 1 or args.max_queue < 1:
        parser.error("--concurrency and --max-queue must be >= 1")
    if not args.max_job_minutes > 0:
        parser.error("--max-job-minutes must be > 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = AppSettings(models=args.models, out=args.out, concurrency=args.concurrency, max_queue=args.max_queue,
                           max_job_minutes=args.max_job_minutes, keep_outputs=args.keep_outputs,
                           showcase=args.showcase, limits=Limits(max_upload_mb=args.max_upload_mb))
    if args.preload and args.models != "synthetic":
        from dreamer.backends.model_sets import ModelConfig, build_backends

        log.info("loading the %s models", args.models)
        build_backends(ModelConfig(models=args.models))
    demo = build_app(settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    # No allowed_paths: the visitors' folders are not served; handlers hand out copies (apps.files).
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=int(args.max_upload_mb * 1e6), footer_links=["api"], theme=demo.theme_for_launch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
