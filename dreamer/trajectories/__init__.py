"""Camera trajectories: the presets a scene is dreamed and rendered along, and trajectory files.

A :class:`Trajectory` is a list of :class:`~dreamer.cameras.Camera` plus one optional prompt per
camera (``None`` means "use the scene prompt"). Cameras use the project convention
(:mod:`dreamer.cameras`): ``c2w`` [4,4] with OpenCV axes (+x right, +y down, +z forward).

* :mod:`~dreamer.trajectories.presets` -- generation presets (``lookaround``, ``rotate360``, ...)
  and how their parameters are read;
* :mod:`~dreamer.trajectories.render_paths` -- render presets for videos (``llff``, ...);
* :mod:`~dreamer.trajectories.rotations` -- yaw/pitch/orbit rotations, quaternions, slerp, and
  single-camera moves;
* :mod:`~dreamer.trajectories.interpolate` -- smooth paths through keyframes;
* :mod:`~dreamer.trajectories.files` -- the JSON trajectory formats (explicit cameras, keyframes,
  nerfstudio ``transforms.json``);
* :mod:`~dreamer.trajectories.registry` -- every preset by name (:func:`make_trajectory`).
"""

from dreamer.trajectories.base import Trajectory, TrajectoryFileError, center_depth_from
from dreamer.trajectories.files import (
    load_trajectory,
    save_trajectory,
    trajectory_to_dict,
)
from dreamer.trajectories.interpolate import interpolate_cameras
from dreamer.trajectories.presets import (
    backward,
    forward,
    lookaround,
    lookdown,
    moveright,
    orbit,
    rotate360,
)
from dreamer.trajectories.registry import (
    GENERATION_PRESETS,
    PRESETS,
    RENDER_PRESETS,
    is_trajectory_file,
    make_trajectory,
)
from dreamer.trajectories.render_paths import back_and_forth, headbanging, llff
from dreamer.trajectories.rotations import orbit_camera, rotate_camera

__all__ = [
    "is_trajectory_file",
    "Trajectory",
    "TrajectoryFileError",
    "lookaround",
    "lookdown",
    "rotate360",
    "forward",
    "backward",
    "moveright",
    "orbit",
    "back_and_forth",
    "llff",
    "headbanging",
    "rotate_camera",
    "orbit_camera",
    "interpolate_cameras",
    "trajectory_to_dict",
    "PRESETS",
    "GENERATION_PRESETS",
    "RENDER_PRESETS",
    "make_trajectory",
    "load_trajectory",
    "save_trajectory",
    "center_depth_from",
]
