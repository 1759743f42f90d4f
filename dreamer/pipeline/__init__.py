"""One scene, start to finish, in its own folder: inputs, settings, checkpoints, stages, exports.

* :mod:`~dreamer.pipeline.settings` -- every setting of a scene (one dataclass per stage), how
  flags and batch entries set them, and the hashes that decide what can be reused;
* :mod:`~dreamer.pipeline.inputs` -- photos and depth maps from files, made safe to use;
* :mod:`~dreamer.pipeline.stages` -- :func:`run_scene`: first view, dream loop, exports, metrics,
  splats, videos, deep zoom, resumable at every stage;
* :mod:`~dreamer.pipeline.checkpoint` -- the dream loop's state after every view;
* :mod:`~dreamer.pipeline.exports` -- the scene folder's files (views, points, cameras, transforms).
"""

from dreamer.pipeline.settings import CONFIG_SECTIONS, SETTING_ALIASES, SceneConfig, SceneConfigs, configs_from_flat
from dreamer.pipeline.stages import SceneOutcome, run_scene

__all__ = ["SceneConfig", "SceneConfigs", "SceneOutcome", "run_scene", "configs_from_flat", "CONFIG_SECTIONS",
           "SETTING_ALIASES"]
