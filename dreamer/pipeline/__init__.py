"""One scene, start to finish, in its own folder: inputs, settings, checkpoints, stages, exports.

* :mod:`~dreamer.pipeline.settings` -- every setting of a scene (one dataclass per stage), how
  flags and batch entries set them, and the hashes that decide what can be reused;
* :mod:`~dreamer.pipeline.inputs` -- photos and depth maps from files, made safe to use;
* :mod:`~dreamer.pipeline.stages` -- :func:`run_scene`: first view, dream loop, exports, metrics,
  splats, videos, deep zoom, resumable at every stage;
* :mod:`~dreamer.pipeline.checkpoint` -- the dream loop's state after every view, and the finished dream;
* :mod:`~dreamer.pipeline.exports` -- the scene folder's files (views, points, cameras, transforms);
* :mod:`~dreamer.pipeline.folder` -- what a scene folder owns, when a run may reuse it, its disk use;
* :mod:`~dreamer.pipeline.presets` -- the defaults of the costly settings for the machine (``--preset``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dreamer.lazy import lazy_exports

__all__ = ["SceneConfig", "SceneConfigs", "SceneOutcome", "run_scene", "configs_from_flat", "CONFIG_SECTIONS",
           "SETTING_ALIASES"]

# Imported on first use, so that a light submodule (presets, limits) or a command line's --help
# does not pay for the stages' imports (torch and the models' libraries).
_HOMES = {name: "dreamer.pipeline.settings" for name in
          ("SceneConfig", "SceneConfigs", "configs_from_flat", "CONFIG_SECTIONS", "SETTING_ALIASES")}
_HOMES.update(SceneOutcome="dreamer.pipeline.stages", run_scene="dreamer.pipeline.stages")

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from dreamer.pipeline.settings import CONFIG_SECTIONS, SETTING_ALIASES, SceneConfig, SceneConfigs, configs_from_flat
    from dreamer.pipeline.stages import SceneOutcome, run_scene


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__)
