"""The app's handlers, one object per process: the tabs' handlers over shared jobs and files.

Stateless apart from the shared model caches, the per-session registry (:mod:`apps.jobs`) and
the files handed out (:mod:`apps.files`); each visitor's scenes live in their ``gr.State``.
"""

from __future__ import annotations

from pathlib import Path

from apps.dream_here import DreamHere
from apps.files import FileDesk
from apps.jobs import Jobs
from apps.scene_tab import SceneTab
from apps.settings import AppSettings
from apps.zoom3d_tab import Zoom3DTab
from apps.zoom_tab import ZoomTab

__all__ = ["DreamerApp"]


class DreamerApp:
    """Every handler of the page: ``scene``, ``dream_here``, ``zoom``, ``zoom3d``, Stop and leaving."""

    def __init__(self, settings: AppSettings, files: FileDesk | None = None):
        self.settings = settings
        self.jobs = Jobs(Path(settings.out).resolve(), settings.max_job_minutes)
        self.files = files or FileDesk()
        self.scene = SceneTab(settings, self.jobs, self.files)
        self.dream_here = DreamHere(self.scene)
        self.zoom = ZoomTab(settings, self.jobs, self.files)
        self.zoom3d = Zoom3DTab(self.scene)

    def stop(self, request) -> str:
        return self.jobs.stop(request)

    def leave(self, request) -> None:
        """The visitor closed the page: forget their session, delete their files (unless kept)."""
        session = self.jobs.session_of(request)
        self.jobs.sessions.forget(session, delete=not self.settings.keep_outputs)
        self.files.forget(session)
