"""The procedural world's fast renderer against the slow reference (dreamer/worlds/reference.py).

The fast path keeps the reference's arithmetic, but not its tensor shapes, so the CPU's kernels
(AVX2 or AVX-512, fused multiply-adds or not) round some sums differently: on one machine the two
agree bit for bit, on another by a few float32 ulps in a ray's direction, which a grazing ray
turns into more (its intersection divides by the small cosine) and a finely zoomed texture turns
into a colour difference (its noise is read at a slightly moved point). Tolerances, measured on an
AMD EPYC with AVX2 (the worst of the cameras here): object ids equal; depth within 1e-4 relative
(worst 3.6e-5, a turned 256x256 view); normals within 1e-3 (worst 3.5e-4); colours (on [0, 1]) a
mean abs difference of 1e-5 or less (worst 4.2e-6), a PSNR of 80 dB or more (worst 87 dB, the
focal-4000 zoom) and no more than 1% of pixels off by more than 1e-4 (worst 0.75%, the same zoom,
there up to 2.2e-3). A wrong octave, table or surface shows as errors of 1e-2 on most pixels.
"""

import math

import pytest
import torch

from dreamer.cameras import DEFAULT_FOCAL_512, Camera, camera_rays, look_at
from dreamer.worlds import ProceduralWorld, noise, raycast
from dreamer.worlds.reference import ReferenceRenderer

DEPTH_RTOL = 1e-4
NORMAL_ATOL = 1e-3
COLOUR_PIXEL_ABS = 1e-4  # a pixel off by more than this counts as off
COLOUR_MAX_OFF_FRACTION = 0.01
COLOUR_MAX_MEAN_ABS = 1e-5
COLOUR_MIN_PSNR = 80.0


@pytest.fixture(scope="module")
def world():
    return ProceduralWorld()


def cam_at(eye, target, size, focal):
    return Camera.from_focal(focal, size[0], size[1], look_at(torch.tensor(eye), torch.tensor(target)))


CAMERAS = {
    "wide": (lambda w: w.first_camera(96, 72), 1),
    "zoom_long_focal": (lambda w: cam_at([0.0, 0.0, 0.0], [0.2, 0.3, 4.0], (64, 48), 4000.0), 1),
    "deep_zoom": (lambda w: cam_at([0.1, 0.2, 0.3], [0.5, 1.5, 3.0], (48, 48), 2e5), 1),
    "oblique_floor": (lambda w: cam_at([0.3, -0.5, 0.2], [1.0, 1.5, 2.5], (96, 72), 70.0), 1),
    "supersampled": (lambda w: cam_at([0.0, 0.0, 0.0], [-1.0, 0.3, 4.0], (40, 30), 30.0), 3),
    "turned_near_objects": (lambda w: cam_at([0.2, -0.3, 0.5], [0.0, 0.5, -4.0], (80, 60), 60.0), 1),
    "looking_up_at_the_lamp": (lambda w: cam_at([0.3, 0.2, 1.0], [0.5, -1.5, 3.3], (64, 64), 80.0), 2),
}


def _psnr(a, b):
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@pytest.mark.parametrize("name", list(CAMERAS))
def test_fast_render_matches_the_reference(world, name):
    make, s = CAMERAS[name]
    cam = make(world)
    ref = ReferenceRenderer(world).render(cam, supersample=s)
    world.clear_cache()
    new = world.render(cam, supersample=s)
    assert torch.equal(new.object_id, ref.object_id)
    assert torch.allclose(new.depth, ref.depth, rtol=DEPTH_RTOL, atol=0)
    assert torch.allclose(new.normal, ref.normal, atol=NORMAL_ATOL)
    _assert_colours_match(new.image, ref.image)
    assert len(new.object_id.unique()) >= 1 and new.image.std() > 0.01  # a real picture, not a blank


def _assert_colours_match(new, ref):
    err = (new - ref).abs()
    off = float((err.amax(-1) > COLOUR_PIXEL_ABS).float().mean())
    assert off <= COLOUR_MAX_OFF_FRACTION, off
    assert float(err.mean()) <= COLOUR_MAX_MEAN_ABS, float(err.mean())
    assert _psnr(new, ref) >= COLOUR_MIN_PSNR, _psnr(new, ref)


def test_first_view_matches_the_reference_with_the_worlds_kept_tables():
    """The benchmark's setting at 256x256: a second camera reuses the noise tables the first
    render built (and a first render of a fresh world builds them) with the same colours."""
    w = ProceduralWorld(0)
    first = w.first_camera(256, 256)
    turned = cam_at([0.0, 0.0, 0.0], [1.5, 0.2, 3.0], (256, 256), first.fx)
    for cam in (first, turned):
        ref = ReferenceRenderer(w).render(cam)
        new = w.render(cam)
        assert torch.equal(new.object_id, ref.object_id)
        assert torch.allclose(new.depth, ref.depth, rtol=DEPTH_RTOL, atol=0)
        _assert_colours_match(new.image, ref.image)
    assert w._noise_tables[torch.device("cpu")].nbytes > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_match_the_reference(seed):
    w = ProceduralWorld(seed)
    cam = cam_at([0.0, 0.1, 0.0], [0.6, 0.4, 4.0], (64, 48), 50.0)
    ref, new = ReferenceRenderer(w).render(cam), w.render(cam)
    assert torch.equal(new.object_id, ref.object_id)
    assert torch.allclose(new.depth, ref.depth, rtol=DEPTH_RTOL, atol=0)
    _assert_colours_match(new.image, ref.image)
    assert torch.allclose(w.depth(cam), ReferenceRenderer(w).depth(cam), rtol=DEPTH_RTOL, atol=0)


def test_every_surface_lies_in_its_screen_rectangle(world):
    """Culling is conservative: across cameras placed all over the room (some next to an
    object), every pixel the reference sees on a surface is inside that surface's rectangle."""
    g = torch.Generator().manual_seed(3)
    lo, hi = world.bounds
    checked = 0
    for _ in range(12):
        eye = lo + 0.2 + (hi - lo - 0.4) * torch.rand(3, generator=g)
        if float(world.distance_to_surface(eye[None])) < 0.05:
            continue
        target = eye + torch.randn(3, generator=g)
        cam = Camera.from_focal(float(20 + 200 * torch.rand(1, generator=g)), 40, 30, look_at(eye, target))
        ids = ReferenceRenderer(world).render(cam).object_id
        inside = torch.zeros_like(ids, dtype=torch.bool)
        for r in raycast.screen_rects(cam, world._np):
            view = inside[r.v0:r.v1, r.u0:r.u1]
            view |= ids[r.v0:r.v1, r.u0:r.u1] == r.oid
        assert inside.all()
        checked += 1
    assert checked >= 8


def test_fine_octaves_of_objects_from_tall_kept_tables():
    """At the 512x512 first view's footprint the central objects' finest octave comes from a
    kept table taller than the in-view limit (rows read at coarser float32 steps), within the
    same tolerance."""
    w = ProceduralWorld(0)
    cam = Camera.from_focal(DEFAULT_FOCAL_512, 96, 96, look_at(torch.zeros(3), w.center))
    ref, new = ReferenceRenderer(w).render(cam), w.render(cam)
    kept = w._noise_tables[torch.device("cpu")]._items.values()
    assert any(atlas.shape[1] > noise._MAX_SIDE for atlas, _, _ in kept)
    assert torch.equal(new.object_id, ref.object_id)
    assert torch.allclose(new.depth, ref.depth, rtol=DEPTH_RTOL, atol=0)
    _assert_colours_match(new.image, ref.image)


def test_planar_rays_are_camera_rays(world):
    cam = cam_at([0.3, -0.2, 0.1], [1.0, 0.5, 4.0], (37, 23), 41.5)
    o, dirs = camera_rays(cam)
    o2, planes = raycast.planar_rays(cam)
    assert torch.equal(o, o2)
    assert torch.allclose(torch.stack(planes, -1), dirs, rtol=0, atol=1e-6)


def test_value_noise_tables_match_the_chained_hash(world):
    """Lattice values through the precomputed tables equal the permutation hash, cell for cell,
    also for negative and wrapping cells; value noise per point matches the reference."""
    P = world._params("cpu")
    g = torch.Generator().manual_seed(0)
    cells = torch.randint(-3000, 3000, (3, 500), generator=g, dtype=torch.int32)
    perm, lat, m = P["perm"], P["lattice"], 1023
    c = cells.long()
    expected = lat[perm[(perm[(perm[c[0] & m] + c[1]) & m] + c[2]) & m]]
    assert torch.equal(noise.lattice_values(cells[0], cells[1], cells[2], P), expected)
    q = torch.rand(3, 2000, generator=g) * 50 + 300
    ref = ReferenceRenderer(world)._value_noise(q.T.contiguous(), P)
    assert torch.allclose(noise.value_noise(q, P), ref, atol=1e-6)


def test_noise_paths_agree(monkeypatch):
    """Tables (2D on a room face, an atlas elsewhere; kept for whole surfaces or built for the
    cells in view) and per-pixel evaluation give the same fBm."""
    world = ProceduralWorld()
    calls = {"tables": 0, "per_pixel": 0}
    for name, key in (("_tabled", "tables"), ("_per_pixel", "per_pixel")):
        def spy(*args, _f=getattr(noise, name), _k=key):
            calls[_k] += 1
            return _f(*args)
        monkeypatch.setattr(noise, name, spy)
    cam = cam_at([0.0, 0.0, 0.0], [0.2, 0.3, 4.0], (64, 48), 300.0)
    with_kept_tables = world.render(cam).image
    kept = world._noise_tables[torch.device("cpu")]
    assert calls["tables"] > 0 and kept.nbytes > 0
    world.clear_cache()
    assert torch.equal(world.render(cam).image, with_kept_tables)  # built once, read again
    monkeypatch.setattr(noise, "_KEPT_CELLS", 0)
    world = ProceduralWorld()
    with_tables = world.render(cam).image
    assert world._noise_tables[torch.device("cpu")].nbytes == 0
    _assert_colours_match(with_tables, with_kept_tables)
    monkeypatch.setattr(noise, "_MIN_CELLS", 0)
    monkeypatch.setattr(noise, "_CELLS_PER_PIXEL", 0.0)
    world.clear_cache()
    calls.update(tables=0, per_pixel=0)
    per_pixel = world.render(cam).image
    world.clear_cache()
    assert calls == {"tables": 0, "per_pixel": calls["per_pixel"]} and calls["per_pixel"] > 0
    _assert_colours_match(with_tables, per_pixel)


def test_renders_are_cached_per_camera_and_returned_as_copies():
    w = ProceduralWorld(0)
    cam = cam_at([0.0, 0.0, 0.0], [0.2, 0.3, 4.0], (32, 24), 30.0)
    first = w.render(cam)
    first.image.zero_()  # the caller's copy: the cache must not see this
    again = w.render(cam)
    assert again.image.std() > 0.01
    assert torch.equal(again.image, w.render(Camera.from_dict(cam.to_dict())).image)  # same bytes, same key
    assert torch.equal(w.depth(cam), again.depth)  # depth comes from the cached render
    moved = cam.with_c2w(look_at(torch.tensor([0.0, 0.0, 0.01]), torch.tensor([0.2, 0.3, 4.0])))
    assert not torch.equal(w.render(moved).depth, again.depth)
    assert not torch.equal(w.render(cam, supersample=2).image, again.image)  # supersampling is its own entry


def test_cache_stays_within_its_budget():
    w = ProceduralWorld(0, cache_bytes=40_000)
    cams = [cam_at([0.0, 0.0, 0.01 * k], [0.2, 0.3, 4.0], (32, 24), 30.0) for k in range(6)]
    for c in cams:
        w.render(c)
    assert w._cache._bytes <= 40_000
    assert ProceduralWorld(0, cache_bytes=0).render(cams[0]).image.shape == (24, 32, 3)
    with pytest.raises(ValueError, match="cache_bytes"):
        ProceduralWorld(0, cache_bytes=-1)


def test_ground_truth_metrics_reuse_the_runs_renders():
    """The dream loop's oracle backends render each camera once; the metrics find every depth
    they need in the world's cache (no ray is traced again)."""
    from dreamer import DreamConfig, dream
    from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
    from dreamer.cameras import DEFAULT_FOCAL_512
    from dreamer.scene.metrics import world_metrics
    from dreamer.trajectories import center_depth_from, make_trajectory

    w = ProceduralWorld(0)
    cam = Camera.from_focal(DEFAULT_FOCAL_512 * 48 / 512, 48, 48)
    first = w.render(cam)
    est = WorldDepthEstimator(w, seed=3)
    traj = make_trajectory("lookaround", cam, center_depth_from(first.depth), n=3)
    result = dream(first.image, traj.cameras, "a room", inpainter=WorldInpainter(w), depth_estimator=est,
                   depth=first.depth, config=DreamConfig())
    assert all(bool(v.mask.any()) for v in result.views[1:])  # every view was inpainted (rendered)
    before = w.cache_info()
    m = world_metrics(result, w, est)
    after = w.cache_info()
    assert after["misses"] == before["misses"]
    assert after["hits"] >= before["hits"] + 2 * (len(result.views) - 1)  # truth and the estimate, per view
    assert m["abs_rel_unaligned"] > m["abs_rel_aligned"] >= 0.0
