"""Lift and render: round trips, the depth test, footprints, hole masks."""

import pytest
import torch

from dreamer.cameras import Camera, rotation_y
from dreamer.pointcloud import PointCloud
from dreamer.render import clean_coverage, dilate, erode, lift, render_points


def plane_view(cam, depth_value=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(cam.height, cam.width, 3, generator=g)
    depth = torch.full((cam.height, cam.width), depth_value) + 0.3 * torch.rand(cam.height, cam.width, generator=g)
    return image, depth


def moved(cam, yaw=0.0, t=(0.0, 0.0, 0.0)):
    c2w = torch.eye(4)
    c2w[:3, :3] = rotation_y(yaw)
    c2w[:3, 3] = torch.tensor(t)
    return cam.with_c2w(cam.c2w @ c2w)


def test_lift_render_round_trip_is_exact():
    c2w = torch.eye(4)
    c2w[:3, :3] = rotation_y(30)
    c2w[:3, 3] = torch.tensor([0.5, -0.2, 1.0])
    cam = Camera.from_focal(50.0, 48, 32, c2w)
    image, depth = plane_view(cam)
    pts = lift(image, depth, cam)
    assert len(pts) == 48 * 32
    assert torch.allclose(pts.radius, depth.reshape(-1) / 50.0)
    r = render_points(pts, cam)
    assert r.covered.all()
    assert torch.equal(r.image, image)
    assert torch.allclose(r.depth, depth, rtol=1e-5)


def test_nearer_surface_wins_regardless_of_order():
    cam = Camera.from_focal(40.0, 32, 32)
    white, black = torch.ones(32, 32, 3), torch.zeros(32, 32, 3)
    near = lift(white, torch.full((32, 32), 1.0), cam)
    far = lift(black, torch.full((32, 32), 3.0), cam)
    for cloud in (near.cat(far), far.cat(near)):
        r = render_points(cloud, cam)
        assert torch.equal(r.image, white)
        assert torch.allclose(r.depth, torch.ones(32, 32))


def test_depth_test_in_a_moved_camera():
    """A near square in front of a far wall occludes exactly where geometry says."""
    cam = Camera.from_focal(40.0, 32, 32)
    wall = lift(torch.zeros(32, 32, 3), torch.full((32, 32), 4.0), cam)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[12:20, 12:20] = True
    square = lift(torch.ones(32, 32, 3), torch.full((32, 32), 2.0), cam, mask)
    other = moved(cam, t=(0.3, 0.0, 0.0))
    r = render_points(wall.cat(square), other)
    white = r.image[..., 0] > 0.5
    assert white.any()
    assert torch.allclose(r.depth[white], torch.full_like(r.depth[white], 2.0), atol=1e-4)
    assert (r.depth[~white & r.covered] > 3.9).all()


def test_footprints_close_pinholes_when_moving_closer():
    cam = Camera.from_focal(40.0, 32, 32)
    image, _ = plane_view(cam)
    pts = lift(image, torch.full((32, 32), 4.0), cam)
    closer = moved(cam, t=(0.0, 0.0, 4.0 - 4.0 / 3.0))  # the plane is 3x nearer: points 3 px apart
    center = render_points(pts, closer).covered[8:24, 8:24]
    assert center.all()
    tiny = render_points(pts, closer, splat_scale=0.1).covered[8:24, 8:24]
    assert not tiny.all()  # without footprints the same cloud has gaps


def test_empty_cloud_and_points_behind_camera():
    cam = Camera.from_focal(40.0, 16, 16)
    r = render_points(PointCloud.empty(), cam)
    assert not r.covered.any() and r.image.shape == (16, 16, 3)
    behind = PointCloud(torch.tensor([[0.0, 0.0, -1.0]]), torch.ones(1, 3), torch.ones(1))
    assert not render_points(behind, cam).covered.any()


def test_clean_coverage_closes_pinholes_and_grows_holes():
    cam = Camera.from_focal(40.0, 32, 32)
    image, depth = plane_view(cam)
    r = render_points(lift(image, depth, cam), cam)
    r.covered[5, 5] = False  # a pinhole
    r.covered[16:24, 16:24] = False  # a real hole
    fixed, masks = clean_coverage(r, close_px=1, grow_px=2)
    assert masks.pinholes[5, 5] and masks.known[5, 5] and not masks.hole[5, 5]
    assert fixed.depth[5, 5] > 0 and fixed.covered[5, 5]
    assert masks.hole[17:23, 17:23].all()
    assert masks.inpaint[14:26, 14:26].all() and not masks.inpaint[10, 10]
    assert (masks.hole <= masks.inpaint).all()


@pytest.mark.parametrize("radius", [1, 2, 3, 4, 7])
def test_dilate_matches_the_reference(radius):
    from dreamer.render_reference import dilate_reference

    g = torch.Generator().manual_seed(radius)
    for shape, density in (((37, 53), 0.03), ((5, 64), 0.2), ((64, 3), 0.1), ((1, 9), 0.3)):
        m = torch.rand(shape, generator=g) < density
        m[0, 0] = m[-1, -1] = True  # the image border is reached
        assert torch.equal(dilate(m, radius), dilate_reference(m, radius))


def test_morphology_is_dual():
    m = torch.zeros(10, 10, dtype=torch.bool)
    m[4:6, 4:6] = True
    assert dilate(m, 1).sum() == 16
    assert erode(dilate(m, 1), 1).sum() == 4


@pytest.mark.parametrize(
    "depth, message",
    [(torch.full((8, 8), float("nan")), "must be finite"), (torch.zeros(8, 8), "<= 0"), (torch.ones(8, 9), "size")],
)
def test_lift_rejects_bad_depth(depth, message):
    cam = Camera.from_focal(10.0, 8, 8)
    with pytest.raises(ValueError, match=message):
        lift(torch.rand(8, 8, 3), depth, cam)


def test_lift_rejects_bad_image():
    cam = Camera.from_focal(10.0, 8, 8)
    with pytest.raises(ValueError, match=r"\[H,W,3\]"):
        lift(torch.rand(8, 8), torch.ones(8, 8), cam)
    with pytest.raises(ValueError, match="float"):
        lift(torch.zeros(8, 8, 3, dtype=torch.uint8), torch.ones(8, 8), cam)


# ----------------------------------------------------------------------------- fast paths vs references


def _random_scene(seed: int, n: int = 4000) -> PointCloud:
    """Points in front of, beside and behind the camera, of footprints from sub-pixel to tens of
    pixels, a few exactly tied in depth, and a few NaN / inf points."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(n, 3, generator=g) * torch.tensor([2.0, 1.5, 2.0]) + torch.tensor([0.0, 0.0, 2.5])
    xyz[: n // 10, 2] = xyz[0, 2]  # ties in depth: the lower index wins
    xyz[-3] = torch.tensor([float("nan"), 0.0, 1.0])
    xyz[-2] = torch.tensor([0.0, float("inf"), 1.0])
    xyz[-1] = torch.tensor([0.0, 0.0, 1e-6])  # on the camera plane
    radius = torch.rand(n, generator=g) ** 3 * 0.2 + 1e-4
    return PointCloud(xyz, torch.rand(n, 3, generator=g), radius)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("splat_scale, max_splat_px", [(1.5, 32.0), (3.0, 4.0), (0.5, 32.0)])
def test_render_points_matches_the_reference(seed, splat_scale, max_splat_px):
    from dreamer.render_reference import render_points_reference

    cloud = _random_scene(seed)
    cam = moved(Camera.from_focal(30.0, 40, 28), yaw=10.0 * seed, t=(0.1 * seed, 0.0, -0.2))
    fast = render_points(cloud, cam, splat_scale=splat_scale, max_splat_px=max_splat_px)
    ref = render_points_reference(cloud, cam, splat_scale=splat_scale, max_splat_px=max_splat_px)
    assert ref.covered.any() and not ref.covered.all()
    for name in ("image", "depth", "covered", "index"):
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name


def test_render_points_culls_nothing_it_should_draw():
    """Points just outside the image whose footprints reach into it are drawn (the frustum cull
    is conservative), on every side."""
    from dreamer.render_reference import render_points_reference

    cam = Camera.from_focal(20.0, 16, 12)
    u = torch.tensor([-3.0, 19.0, 8.0, 8.0, -30.0])
    v = torch.tensor([6.0, 6.0, -3.0, 15.0, 6.0])
    z = torch.full((5,), 2.0)
    xyz = torch.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z], -1)
    cloud = PointCloud(xyz, torch.rand(5, 3), torch.full((5,), 0.5))  # 5 px footprints: half-size 3.75
    fast, ref = render_points(cloud, cam), render_points_reference(cloud, cam)
    assert torch.equal(fast.index, ref.index)
    assert set(fast.index.unique().tolist()) == {-1, 0, 1, 2, 3}


@pytest.mark.parametrize("block", [64, 100, 256])
def test_render_points_skips_blocks_outside_the_view_exactly(monkeypatch, block):
    """A cloud lifted view by view around the camera (consecutive points close together), with
    the NaN / inf points of the random scene: blocks whose box misses the frustum are skipped,
    and the render is still the reference's."""
    import dreamer.render as render_module
    from dreamer.render_reference import render_points_reference

    cam = Camera.from_focal(90.0, 120, 90)
    cloud = _random_scene(5, n=500)
    for yaw in (0.0, 90.0, 180.0, 270.0, 30.0):
        view = moved(cam, yaw=yaw, t=(0.1, 0.0, 0.0))
        image, depth = plane_view(view, depth_value=1.5 + yaw / 180.0, seed=int(yaw))
        cloud = cloud.cat(lift(image, depth, view))
    monkeypatch.setattr(render_module, "BOX_BLOCK", block)
    lo, hi = render_module.block_bounds(cloud.xyz, block)
    reach = render_module._boxes_may_reach(lo, hi, cam, 1e-4, 32.0)
    assert 0 < int(reach.sum()) < len(reach) // 2  # most blocks are skipped
    for target in (cam, moved(cam, yaw=20.0, t=(0.3, 0.1, -0.5))):
        fast, ref = render_points(cloud, target), render_points_reference(cloud, target)
        for name in ("image", "depth", "covered", "index"):
            assert torch.equal(getattr(fast, name), getattr(ref, name)), name


def test_block_bounds_are_each_blocks_min_and_max():
    from dreamer.pointcloud import block_bounds, block_points

    expected = torch.cat([torch.arange(0, 100), torch.arange(200, 250)])
    assert torch.equal(block_points(torch.tensor([0, 2]), 100, 250), expected)
    assert torch.equal(block_points(torch.tensor([1]), 100, 250), torch.arange(100, 200))

    xyz = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    for block in (64, 100, 128, 1000, 4096):
        lo, hi = block_bounds(xyz, block)
        starts = range(0, 1000, block)
        assert torch.equal(lo, torch.stack([xyz[s : s + block].amin(0) for s in starts]))
        assert torch.equal(hi, torch.stack([xyz[s : s + block].amax(0) for s in starts]))


@pytest.mark.parametrize("close_px", [0, 1, 2, 3])
def test_clean_coverage_matches_the_reference(close_px):
    from dreamer.render_reference import clean_coverage_reference

    cam = Camera.from_focal(30.0, 40, 28)
    g = torch.Generator().manual_seed(close_px)
    r = render_points(_random_scene(close_px), cam)
    drop = torch.rand(28, 40, generator=g) < 0.2  # scattered pinholes of all sizes
    r.covered &= ~drop
    fast, fast_masks = clean_coverage(r, close_px=close_px, grow_px=2)
    ref, ref_masks = clean_coverage_reference(r, close_px=close_px, grow_px=2)
    for name in ("image", "depth", "covered"):
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name
    for name in ("known", "hole", "inpaint", "pinholes"):
        assert torch.equal(getattr(fast_masks, name), getattr(ref_masks, name)), name
    if close_px:
        assert fast_masks.pinholes.any()


def _plain_cat(a: PointCloud, b: PointCloud) -> PointCloud:
    """The reference append: one torch.cat per tensor (what PointCloud.cat did before its buffer)."""
    return PointCloud(torch.cat([a.xyz, b.xyz.to(a.xyz)]), torch.cat([a.rgb, b.rgb.to(a.rgb)]),
                      torch.cat([a.radius, b.radius.to(a.radius)]))


def test_cat_appends_in_place_and_matches_a_plain_cat(tmp_path):
    """A chain of appends (empty parts, parts crossing block boundaries, a buffer that grows) gives
    the plain concatenation, its block bounds are block_bounds' own, appending to an older cloud
    of the chain leaves the newer ones alone, and a saved cloud is the saved plain cloud (byte for
    byte with torch.save, as many bytes in a checkpoint): the buffer behind it is not saved."""
    from dreamer.pipeline.checkpoint import save_finished
    from dreamer.pointcloud import BOX_BLOCK, block_bounds
    from dreamer.scene.result import DreamResult

    g = torch.Generator().manual_seed(0)

    def rnd(n):
        return PointCloud(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g),
                          torch.rand(n, generator=g) + 0.1)

    cloud = ref = rnd(1500)
    chain = []
    for n in (700, 0, BOX_BLOCK, 1, 3 * BOX_BLOCK + 5, 20):
        part = rnd(n)
        grown = cloud.cat(part)
        if chain and n and grown._buffer is cloud._buffer:  # written behind the points, not copied
            assert grown.xyz.data_ptr() == cloud.xyz.data_ptr()
        cloud, ref = grown, _plain_cat(ref, part)
        chain.append((cloud, ref))
        for name in ("xyz", "rgb", "radius"):
            assert torch.equal(getattr(cloud, name), getattr(ref, name)), name
        for got, want in zip(cloud.block_bounds(), block_bounds(ref.xyz, BOX_BLOCK)):
            assert torch.equal(got, want)
    assert any(b._buffer is a._buffer for (a, _), (b, _) in zip(chain, chain[1:]))  # some appends were in place
    # Appending to an older cloud copies: the newer clouds keep their points.
    (old, old_ref), (newer, newer_ref) = chain[1], chain[2]
    part = rnd(50)
    branch = old.cat(part)
    assert torch.equal(branch.xyz, _plain_cat(old_ref, part).xyz)
    assert torch.equal(newer.xyz, newer_ref.xyz) and torch.equal(cloud.xyz, ref.xyz)
    # Saved: the points only, not the buffer behind them.
    for c, r in ((cloud, ref), (newer, newer_ref)):
        a, b = tmp_path / "a" / "cloud.pt", tmp_path / "b" / "cloud.pt"  # torch.save writes the name too
        a.parent.mkdir(exist_ok=True)
        b.parent.mkdir(exist_ok=True)
        torch.save(c, a)
        torch.save(r, b)
        assert a.read_bytes() == b.read_bytes()
        assert torch.load(a, weights_only=False)._buffer is None
    # A checkpoint (written under a temporary name, which torch.save records) holds the same points
    # in as many bytes.
    save_finished(tmp_path / "grown", DreamResult(cloud, []))
    save_finished(tmp_path / "plain", DreamResult(ref, []))
    grown, plain = tmp_path / "grown" / "result.pt", tmp_path / "plain" / "result.pt"
    assert grown.stat().st_size == plain.stat().st_size
    saved = torch.load(grown)["points"]
    for name in ("xyz", "rgb", "radius"):
        assert torch.equal(saved[name], getattr(ref, name)), name


def test_render_and_merge_with_kept_block_bounds_match_fresh_ones():
    """render_points and dedup_mask on a grown cloud (its kept block bounds) give what they give
    on the same points in a plain cloud."""
    from alignment import dedup_mask

    cam = Camera.from_focal(90.0, 120, 90)
    cloud = ref = PointCloud.empty()
    for yaw in (0.0, 90.0, 180.0, 270.0, 30.0):
        view = moved(cam, yaw=yaw, t=(0.1, 0.0, 0.0))
        image, depth = plane_view(view, depth_value=1.5 + yaw / 180.0, seed=int(yaw))
        part = lift(image, depth, view)
        cloud, ref = cloud.cat(part), _plain_cat(ref, part)
    assert cloud._buffer is not None and ref._buffer is None
    target = moved(cam, yaw=20.0, t=(0.3, 0.1, -0.5))
    fast, plain = render_points(cloud, target), render_points(ref, target)
    for name in ("image", "depth", "covered", "index"):
        assert torch.equal(getattr(fast, name), getattr(plain, name)), name
    image, depth = plane_view(target, depth_value=1.6, seed=7)
    new = lift(image, depth, target)
    keep = dedup_mask(ref.xyz, ref.radius, new.xyz, new.radius, merge_within_new=False)
    assert 0 < int(keep.sum()) < len(keep)
    for points in (cloud, ref):
        k = dedup_mask(points.xyz, points.radius, new.xyz, new.radius, merge_within_new=False,
                       existing_blocks=points.block_bounds)
        assert torch.equal(k, keep)


def test_lift_of_masked_pixels_is_the_whole_lift_masked():
    """Lifting only the masked pixels gives exactly the points the whole map's lift has there
    (float32 and float64 depth, a rotated and moved camera)."""
    g = torch.Generator().manual_seed(4)
    cam = moved(Camera.from_focal(37.0, 45, 31), yaw=23.0, t=(0.3, -0.2, 0.7))
    image = torch.rand(31, 45, 3, generator=g)
    mask = torch.rand(31, 45, generator=g) < 0.3
    for dtype in (torch.float32, torch.float64):
        depth = (1.0 + 3.0 * torch.rand(31, 45, generator=g)).to(dtype)
        whole, part = lift(image, depth, cam), lift(image, depth, cam, mask)
        flat = mask.reshape(-1)
        for name in ("xyz", "rgb", "radius"):
            assert torch.equal(getattr(part, name), getattr(whole, name)[flat]), name


@pytest.mark.parametrize("sides", [(1, 2), (1, 2, 3), (2, 3), (1, 3, 7), (3,)])
def test_zbuffer_min_over_boxes_of_mixed_sides_matches_a_plain_scatter(sides):
    """Boxes of several small sides (splatted as one group when cheaper) and large ones give the
    minimum key per pixel of every box, as a scatter of each box's pixels one by one."""
    import dreamer.render as render_module

    g = torch.Generator().manual_seed(len(sides))
    H, W, n = 17, 23, 400
    side = torch.tensor(sides)[torch.randint(0, len(sides), (n,), generator=g)]
    wu = torch.minimum(side, 1 + torch.randint(0, 7, (n,), generator=g))  # some narrower than the side
    wv = side.clone()
    flip = torch.rand(n, generator=g) < 0.5
    wu, wv = torch.where(flip, wv, wu), torch.where(flip, wu, wv)
    u0 = torch.randint(0, W, (n,), generator=g)
    v0 = torch.randint(0, H, (n,), generator=g)
    u1, v1 = (u0 + wu - 1).clamp(max=W - 1), (v0 + wv - 1).clamp(max=H - 1)
    key = torch.randperm(n, generator=g).long() << 8
    expected = torch.full((H * W,), render_module._EMPTY, dtype=torch.int64)
    for i in range(n):
        for y in range(int(v0[i]), int(v1[i]) + 1):
            for x in range(int(u0[i]), int(u1[i]) + 1):
                expected[y * W + x] = min(int(expected[y * W + x]), int(key[i]))
    assert torch.equal(render_module._zbuffer_min(key, u0, u1, v0, v1, H, W), expected)
