"""dreamer.scene.metrics: the seam step against a hand-computed case."""

import torch

from dreamer.cameras import Camera, camera_rays
from dreamer.scene.metrics import _seam_error, _seen_before, _seen_maps


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


def test_pixels_neither_new_nor_existing_make_no_seam():
    """A new pixel next to one of the new content that was not lifted (the far side of a depth
    edge) is no seam pair: only the steps against the cloud's own pixels count."""
    depth, truth, new = _case()
    existing = ~new
    # Column 20 of the new half was not lifted and holds a wild depth (a ramp across an edge).
    dropped = torch.zeros_like(new)
    dropped[:, 20] = True
    new = new & ~dropped
    depth = torch.where(dropped, truth * 1.4, depth)
    assert _seam_error(depth, truth, new, window=4) > 0.1  # every non-new pixel: the wild column dominates
    assert abs(_seam_error(depth, truth, new, window=4, existing=existing) - 0.03) < 1e-12
    # When the cloud's side is itself wrong, the step it makes with the new side counts:
    # 2.06 against 1.96 where the truth has no step, relative to the truth 2.
    depth = torch.where(existing, truth * 0.98, depth)
    assert abs(_seam_error(depth, truth, new, existing=existing) - 0.05) < 1e-12


class _PillarWorld:
    """A wall at z = 5 and, optionally, a pillar face at z = 2 for world x in [-0.5, 0.5]
    (infinite in y); cameras look down +z from z = 0 without rotation."""

    def __init__(self, pillar: bool):
        self.pillar = pillar

    def depth(self, camera):
        origin, dirs = camera_rays(camera)
        x_at_pillar = origin[0] + 2.0 * dirs[..., 0]
        hit = x_at_pillar.abs() <= 0.5 if self.pillar else torch.zeros_like(x_at_pillar, dtype=bool)
        return torch.where(hit, 2.0, 5.0)


def _camera_at(x: float, size: int = 32):
    c2w = torch.eye(4)
    c2w[0, 3] = x
    # f chosen so that a wall point seen by the camera at x = 3 falls 0.25 px from a pixel
    # centre of the camera at x = 0 (at 32 px, u_A = u_B + 0.5 + 3 f / 5 with 3 f / 5 = 18.25):
    # no pixel lies on the boundary of the other's image.
    return Camera.from_focal(30.416666 * size / 32, size, size, c2w)


def test_seen_before_is_the_earlier_frustum_on_a_wall():
    world = _PillarWorld(pillar=False)
    a, b = _camera_at(0.0), _camera_at(3.0)
    seen = _seen_before(b, [_seen_maps(world, a, None)], world.depth(b))
    # u_A = u_B + 18.75 lies inside A's 32 columns for u_B <= 13.
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[:, :14] = True
    assert torch.equal(seen, expected)
    assert not _seen_before(b, [], world.depth(b)).any()
    assert _seen_before(b, [_seen_maps(world, b, None)], world.depth(b)).all()


def test_seen_before_leaves_out_what_a_nearer_surface_hid():
    """From A at x = 0 the pillar shadows the wall for |x| < 1.25, and A sees the wall up to
    |x| = 2.63; B at x = 1.5 sees the wall from x = -1 on (the pillar hides the rest). So B's wall
    pixels between x = 1.25 and 2.63 are seen, those between -1 and 1.25 are hidden from A behind
    the pillar, those beyond 2.63 lie outside A's image. Pixels within 0.2 m (2.4 px) of a
    boundary are left out (the 3x3 maximum's leniency)."""
    world = _PillarWorld(pillar=True)
    a, b = _camera_at(0.0, 64), _camera_at(1.5, 64)
    truth = world.depth(b)
    seen = _seen_before(b, [_seen_maps(world, a, None)], truth)
    origin, dirs = camera_rays(b)
    x = origin[0] + truth * dirs[..., 0]  # world x of B's true surface points
    wall = truth == 5.0
    visible = wall & (x > 1.25 + 0.2) & (x < 2.63 - 0.2)
    behind_pillar = wall & (x > -1.0 + 0.2) & (x < 1.25 - 0.2)
    outside = wall & (x > 2.63 + 0.2)
    assert visible.sum() >= 10 * 64 and behind_pillar.sum() >= 20 * 64 and outside.sum() >= 10 * 64
    assert seen[visible].all()
    assert not seen[behind_pillar].any()
    assert not seen[outside].any()
    # Seen from B itself, every pixel is.
    assert _seen_before(b, [_seen_maps(world, a, None), _seen_maps(world, b, None)], truth).all()


def test_seen_before_on_the_procedural_world_identity():
    """Every pixel of a camera is seen by that camera itself, grazing floor and edges included."""
    from dreamer.worlds import ProceduralWorld
    world = ProceduralWorld(seed=0)
    cam = world.first_camera(64, 64)
    assert _seen_before(cam, [_seen_maps(world, cam, None)], world.depth(cam)).all()


def test_seen_before_judges_only_where_asked():
    """Restricted to some pixels, the verdict there is the full one's, and False elsewhere."""
    world = _PillarWorld(pillar=True)
    a, b = _camera_at(0.0, 64), _camera_at(1.5, 64)
    truth = world.depth(b)
    full = _seen_before(b, [_seen_maps(world, a, None)], truth)
    where = torch.zeros(64, 64, dtype=torch.bool)
    where[::3, 5:60] = True
    part = _seen_before(b, [_seen_maps(world, a, None)], truth, where=where)
    assert torch.equal(part, full & where)
    assert full[where].any() and not full[where].all()


def test_seen_before_counts_only_what_the_earlier_view_lifted():
    """A's pixels it did not lift (columns 16 and beyond: the cloud already showed something
    there) hold nothing: B's wall points landing there are not seen, except within a pixel of a
    lifted column."""
    world = _PillarWorld(pillar=False)
    a, b = _camera_at(0.0), _camera_at(3.0)
    truth = world.depth(b)
    lifted = torch.zeros(32, 32, dtype=torch.bool)
    lifted[:, :16] = True
    seen = _seen_before(b, [_seen_maps(world, a, lifted)], truth)
    # B's column u lands on A's column u + 18.75 (see test_seen_before_is_the_earlier_frustum_on_a_wall):
    # within a pixel of A's lifted columns 0-15 for u + 18 <= 16, i.e. never; with A's columns
    # 0-20 lifted, for u <= 3 (A's column 21 is next to 20).
    assert not seen.any()
    lifted[:, :21] = True
    seen = _seen_before(b, [_seen_maps(world, a, lifted)], truth)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[:, :4] = True
    assert torch.equal(seen, expected)
