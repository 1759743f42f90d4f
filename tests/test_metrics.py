"""dreamer.scene.metrics: the seam step against hand-computed cases."""

import torch

from dreamer.scene.metrics import _seam_error


def _case():
    """A flat truth at depth 2; the right half new. The new half sits 3% too far."""
    truth = torch.full((32, 32), 2.0, dtype=torch.float64)
    new = torch.zeros(32, 32, dtype=torch.bool)
    new[:, 16:] = True
    depth = torch.where(new, truth * 1.03, truth)
    return depth, truth, new


def test_the_seam_step_is_the_step_the_truth_does_not_have():
    depth, truth, new = _case()
    assert abs(_seam_error(depth, truth, new) - 0.03) < 1e-12
    assert abs(_seam_error(depth, truth, new, window=4) - 0.03) < 1e-12
    # A real step of the truth at the seam (a disocclusion) is no error when the depth has it.
    far = torch.where(new, truth * 1.5, truth)
    assert _seam_error(far, far, new) == 0.0


def test_excluded_known_pixels_leave_their_pairs_out():
    depth, truth, new = _case()
    # Rows 0-19 of the known side show the wall far behind an object the cloud never had.
    depth[:20, :16] = truth[:20, :16] * 1.8
    assert _seam_error(depth, truth, new, window=4) > 0.5  # those rows dominate the median
    unseen = torch.zeros_like(new)
    unseen[:20, :16] = True
    assert abs(_seam_error(depth, truth, new, window=4, exclude=unseen) - 0.03) < 1e-12


def test_never_seen_surfaces_depend_on_the_earlier_cameras_only():
    from dreamer.cameras import DEFAULT_FOCAL_512, Camera, rotation_y
    from dreamer.scene.metrics import _never_seen
    from dreamer.worlds import ProceduralWorld

    world = ProceduralWorld(seed=0)
    cam = Camera.from_focal(DEFAULT_FOCAL_512 * 48 / 512, 48, 48)
    truth = world.depth(cam)
    assert float(_never_seen(world, truth, cam, [cam]).float().mean()) < 0.01  # the same camera saw it all
    assert bool(_never_seen(world, truth, cam, []).all())
    turn = torch.eye(4)
    turn[:3, :3] = rotation_y(180.0)
    behind = cam.with_c2w(cam.c2w @ turn)
    assert float(_never_seen(world, truth, cam, [behind]).float().mean()) > 0.99
    # Turned by 30 degrees (of a 60-degree view): the pixels it still sees are seen, on one side.
    turn[:3, :3] = rotation_y(30.0)
    unseen = _never_seen(world, truth, cam, [cam.with_c2w(cam.c2w @ turn)])
    assert 0.2 < float(unseen.float().mean()) < 0.8
    cols = unseen.float().mean(dim=0)
    assert float(cols[:8].mean()) > 0.9 and float(cols[-8:].mean()) < 0.1 or \
        float(cols[-8:].mean()) > 0.9 and float(cols[:8].mean()) < 0.1
