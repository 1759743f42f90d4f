"""Depth supervision of the splats: the depth loss moves Gaussians along the rays, and the
dreamed views' depth maps add the points of surfaces the cloud lacks."""

import torch

from dreamer.cameras import Camera
from dreamer.render import lift, render_points
from dreamer.scene import DreamResult, DreamView
from dreamer.splats import SplatConfig, rasterize, train_gaussians
from dreamer.splats.depth_points import add_view_depth_points, missing_surface_mask
from dreamer.splats.losses import inverse_depth_l1
from test_splats_train import FAST, world_scene


def test_the_depth_loss_moves_a_gaussian_to_the_target_depth():
    """One Gaussian 2 m in front of the camera, the target 3 m: the loss's gradient reaches the
    mean and descending it moves the Gaussian back along the ray until the rendered (expected)
    depth is the target."""
    cam = Camera.from_fov(60.0, 32, 32)
    means = torch.tensor([[0.05, -0.03, 2.0]], requires_grad=True)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    scales = torch.full((1, 3), 0.3)
    opacities = torch.tensor([0.9])
    sh = torch.full((1, 1, 3), 0.2)
    target = torch.full((32, 32), 3.0)
    out = rasterize(means, quats, scales, opacities, sh, cam)
    inverse_depth_l1(out.depth, target, out.alpha.detach() > 0.5).backward()
    assert float(means.grad[0, 2]) < 0  # descending the gradient moves the Gaussian farther
    opt = torch.optim.Adam([means], lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        out = rasterize(means, quats, scales, opacities, sh, cam)
        inverse_depth_l1(out.depth, target, out.alpha.detach() > 0.5).backward()
        opt.step()
    depth = rasterize(means.detach(), quats, scales, opacities, sh, cam).depth[16, 16]
    assert abs(float(depth) - 3.0) < 0.05, float(depth)


def _wall_and_box(size=32):
    """A cloud of a wall 5 m in front of the camera, and a view of the same camera whose depth
    map also sees a box 2 m away over the pixels [10:22, 10:22] (red), which the cloud lacks."""
    cam = Camera.from_fov(60.0, size, size)
    wall = torch.full((size, size), 5.0)
    grey = torch.full((size, size, 3), 0.5)
    points = lift(grey, wall, cam)
    depth, image = wall.clone(), grey.clone()
    depth[10:22, 10:22] = 2.0
    image[10:22, 10:22] = torch.tensor([1.0, 0.0, 0.0])
    return cam, points, DreamView(cam, image, depth, torch.zeros(size, size, dtype=torch.bool)), \
        DreamView(cam, grey, wall, torch.zeros(size, size, dtype=torch.bool))


def test_a_view_that_sees_a_surface_the_cloud_lacks_adds_its_points():
    cam, points, box_view, wall_view = _wall_and_box()
    mask = missing_surface_mask(points, box_view)
    assert bool(mask[11:21, 11:21].all())  # the box, but for its outline at most
    assert not bool(mask[:, :9].any()) and not bool(mask[:, 23:].any())  # the wall is in the cloud
    result, added = add_view_depth_points(DreamResult(points, [wall_view, box_view]))
    assert added == int(mask.sum()) and len(result.points) == len(points) + added
    new = result.points.xyz[len(points):]
    assert torch.allclose(new[:, 2], torch.full_like(new[:, 2], 2.0), atol=1e-4)  # on the box, not the wall
    assert torch.allclose(result.points.rgb[len(points):], torch.tensor([1.0, 0.0, 0.0]).expand(added, 3))
    r = render_points(result.points, cam)
    assert torch.allclose(r.depth[11:21, 11:21], torch.full((10, 10), 2.0), atol=1e-3)
    # A view that agrees with the cloud adds nothing.
    same, none = add_view_depth_points(DreamResult(points, [wall_view]))
    assert none == 0 and same.points is points


def test_after_the_depth_points_every_view_agrees_with_the_cloud():
    """The procedural world's scene (each view lifted only where the cloud did not cover it, so
    surfaces in front of ones seen earlier are missing): afterwards no view sees a surface the
    cloud lacks."""
    result, _ = world_scene(64, 48, yaws=(-24.0, 0.0, 24.0))
    before = sum(int(missing_surface_mask(result.points, v).sum()) for v in result.views)
    more, added = add_view_depth_points(result)
    after = sum(int(missing_surface_mask(more.points, v).sum()) for v in result.views)
    assert before > 20 and added >= before // 2 and after <= before // 20, (before, added, after)


def test_depth_supervision_makes_the_gaussians_of_the_missing_surface():
    cam, points, box_view, wall_view = _wall_and_box()
    result = DreamResult(points, [wall_view, box_view])
    cfg = dict(iterations=1, densify=False, extra_views=False, **FAST)
    plain = train_gaussians(result, SplatConfig(depth_weight=0.0, **cfg))
    supervised = train_gaussians(result, SplatConfig(depth_weight=1.0, **cfg))
    off = train_gaussians(result, SplatConfig(depth_weight=1.0, depth_points=False, **cfg))
    assert len(plain) == len(off) < len(supervised)
    _, depth, _ = supervised.render(cam)
    assert float((depth[12:20, 12:20] - 2.0).abs().max()) < 0.2  # the box is there from the start


def test_path_view_indices_spread_over_the_path():
    from dreamer.splats.views import path_view_indices

    assert path_view_indices(400, 5) == [0, 100, 200, 299, 399]
    assert path_view_indices(3, 16) == [0, 1, 2]
    assert path_view_indices(10, 0) == [] and path_view_indices(7, 1) == [0]
    idx = path_view_indices(401, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 400


def test_path_views_are_the_clouds_render_with_its_pinholes_closed():
    from dreamer.render import clean_coverage
    from dreamer.splats.views import build_training_views
    from dreamer.trajectories import orbit_camera

    result, _ = world_scene(48, 36, yaws=(0.0, 12.0))
    path = [orbit_camera(result.views[0].camera, 3.0, y, 4.0) for y in (-10.0, -5.0, 5.0, 10.0, 15.0)]
    cfg = SplatConfig(extra_views=False, path_views=3, **FAST)
    views = build_training_views(result, cfg, path_cameras=path)
    assert len(views) == 2 + 3
    for view, cam in zip(views[2:], (path[0], path[2], path[4])):
        assert view.extra and torch.equal(view.camera.c2w, cam.c2w)
        raw = render_points(result.points, cam, splat_scale=1.5)
        fixed, masks = clean_coverage(raw, close_px=cfg.path_close_px, grow_px=0)
        assert torch.equal(view.mask, masks.known) and bool((view.mask | ~raw.covered).all())
        assert int(view.mask.sum()) > int(raw.covered.sum())  # pinholes closed
        assert torch.allclose(view.image[raw.covered], raw.image[raw.covered].float())
        assert bool((view.depth[view.mask] > 0).all()) and bool((view.depth[~view.mask] == 0).all())
    assert len(build_training_views(result, cfg)) == 2  # no path cameras given: no path views


def test_the_refine_step_trains_on_the_render_path():
    from dreamer.pipeline.settings import RefineConfig

    splats = SplatConfig()
    assert RefineConfig(refine=True).splat_config(splats).path_views == RefineConfig().refine_path_views > 0
    assert RefineConfig(refine=False).splat_config(splats) is splats
    assert RefineConfig(refine=True).splat_config(splats).opaque_weight == RefineConfig().refine_opaque_weight > 0
    assert RefineConfig(refine=True).splat_config(splats).min_scale_px == RefineConfig().refine_min_scale_px > 0
    own = SplatConfig(path_views=3, depth_weight=0.1, opaque_weight=0.5, min_scale_px=0.3)
    assert RefineConfig(refine=True).splat_config(own) is own  # its own settings are kept
