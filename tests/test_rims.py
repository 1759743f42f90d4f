"""alignment.rims: a foreground drawn too wide is peeled back to its silhouette where the picture
shows it, and an estimate whose edges are right is left alone."""

import pytest
import torch
import torch.nn.functional as F

from alignment.rims import peel_rims

_FOREGROUND, _BACKGROUND = (0.2, 0.6, 0.2), (0.4, 0.5, 0.8)


def _scene(H=32, W=32, texture=0.0, seed=0):
    """A square object (green, depth 1) before a wall (blue, depth 2); ``texture``: a per-pixel
    colour noise of that amplitude on both."""
    obj = torch.zeros(H, W, dtype=torch.bool)
    obj[10:22, 8:20] = True
    depth = torch.where(obj, 1.0, 2.0)
    image = torch.where(obj[..., None], torch.tensor(_FOREGROUND), torch.tensor(_BACKGROUND))
    if texture > 0:
        g = torch.Generator().manual_seed(seed)
        image = (image + texture * (2 * torch.rand(H, W, 3, generator=g) - 1)).clamp(0, 1)
    return obj, depth, image


def _fattened(depth, px):
    """The nearer depth grown by ``px`` pixels (a min filter), as a depth model draws it."""
    return -F.max_pool2d(-depth[None, None], 2 * px + 1, stride=1, padding=px)[0, 0]


@pytest.mark.parametrize("px", [1, 2])
def test_a_fattened_silhouette_is_peeled_back_exactly(px):
    obj, depth, image = _scene()
    fat = _fattened(depth, px)
    rim = (fat < depth)
    assert int(rim.sum()) > 40 * px  # the case has a rim to peel
    out, peeled = peel_rims(fat, image, passes=px, radius=px + 1)
    assert torch.equal(peeled, rim)
    assert torch.equal(out, depth)


def test_passes_bound_the_width_peeled_from_the_outside_in():
    obj, depth, image = _scene()
    fat = _fattened(depth, 2)
    out, peeled = peel_rims(fat, image, passes=1, radius=3)
    outer = fat < _fattened(depth, 1)  # the rim's outer ring
    assert torch.equal(peeled, outer)
    assert torch.equal(out, _fattened(depth, 1))


def test_on_textured_surfaces_most_of_the_rim_goes_and_the_object_stays():
    obj, depth, image = _scene(texture=0.08)
    fat = _fattened(depth, 1)
    rim = fat < depth
    out, peeled = peel_rims(fat, image, passes=2, radius=3)
    assert int((peeled & rim).sum()) >= 0.9 * int(rim.sum())
    assert not (peeled & obj).any()  # no pixel of the object itself is pushed back
    assert (out[obj] == 1.0).all()


def test_right_edges_a_slope_and_an_outlier_are_left_alone():
    obj, depth, image = _scene(texture=0.08)
    out, peeled = peel_rims(depth, image)  # the edge is where the picture's is: nothing to peel
    assert not peeled.any() and torch.equal(out, depth)
    # A floor seen at a grazing angle (depth 1/(0.02 * row) grows 3-30% a row) is no edge.
    rows = torch.arange(1, 33, dtype=torch.float32)
    floor = (1.0 / (0.02 * rows))[:, None].expand(32, 32).contiguous()
    _, peeled = peel_rims(floor, image)
    assert not peeled.any()
    # Isolated far outlier pixels on a textured wall: their neighbours are not pulled back to them.
    g = torch.Generator().manual_seed(1)
    wall = torch.full((32, 32), 2.0)
    wall[torch.randint(2, 30, (40,), generator=g), torch.randint(2, 30, (40,), generator=g)] = 4.0
    texture = (0.5 + 0.3 * (2 * torch.rand(32, 32, 3, generator=g) - 1))
    _, peeled = peel_rims(wall, texture)
    assert not peeled.any()


def test_a_blended_silhouette_pixel_stays_unless_its_colour_is_clearly_the_far_sides():
    obj, depth, image = _scene()
    ring = (_fattened(torch.where(obj, 1.0, 2.0), 1) < depth)  # the wall's pixels next to the object
    fg, bg = torch.tensor(_FOREGROUND), torch.tensor(_BACKGROUND)
    inner = -F.max_pool2d(-obj[None, None].float(), 3, stride=1, padding=1)[0, 0]
    edge = obj & ~inner.bool()
    # The object's own edge pixels, 40% object and 60% wall in colour (anti-aliased): kept.
    blended = torch.where(edge[..., None], 0.4 * fg + 0.6 * bg, image)
    _, peeled = peel_rims(depth, blended)
    assert not peeled.any()
    # The same edge drawn one pixel too wide with a wall-coloured rim: the rim goes.
    _, peeled = peel_rims(_fattened(depth, 1), blended, passes=1)
    assert torch.equal(peeled, ring)


def _straight_edge(alpha):
    """An object filling the columns left of 10 (depth 1, green) before a wall (depth 2, blue),
    drawn one column too wide: column 10 has the object's depth and the colour ``alpha`` x green
    + (1 - alpha) x blue."""
    fg, bg = torch.tensor(_FOREGROUND), torch.tensor(_BACKGROUND)
    cols = torch.arange(24)
    image = torch.where((cols < 10)[None, :, None], fg, bg).expand(16, 24, 3).clone()
    image[:, 10] = alpha * fg + (1 - alpha) * bg
    depth = torch.where(cols < 11, 1.0, 2.0)[None].expand(16, 24).contiguous()
    return depth, image


def test_ratio_sets_how_clearly_a_pixel_must_look_like_the_far_side():
    """In a window of radius 2 the near side holds 10 object pixels and 4 of the rim column, so
    a rim pixel of colour alpha goes when alpha / (1 - alpha) < ratio x 10/14: alpha < 0.26 at the
    default ratio 0.5, alpha < 1/3 at 0.7."""
    rim = torch.zeros(16, 24, dtype=torch.bool)
    rim[:, 10] = True
    for alpha, ratio, peeled_expected in ((0.2, 0.5, True), (0.3, 0.5, False), (0.3, 0.7, True)):
        depth, image = _straight_edge(alpha)
        _, peeled = peel_rims(depth, image, passes=1, radius=2, ratio=ratio)
        assert torch.equal(peeled, rim if peeled_expected else torch.zeros_like(rim)), (alpha, ratio)


def test_threshold_sets_which_steps_are_edges():
    depth, image = _straight_edge(0.0)
    depth = torch.where(depth > 1.5, 1.1, 1.0)  # a 10% step
    assert peel_rims(depth, image, threshold=0.08)[1].any()
    assert not peel_rims(depth, image, threshold=0.15)[1].any()


def test_a_wide_rim_and_any_depth_scale_or_dtype():
    obj, depth, image = _scene(48, 48)
    fat = _fattened(depth, 5)
    out, peeled = peel_rims(fat, image, passes=5, radius=6)  # a window of radius 6, rows sampled
    assert torch.equal(out, depth)
    fat = _fattened(depth, 2)
    for scale in (1e-20, 1e20):
        out, peeled = peel_rims((fat * scale).double(), image)
        assert out.dtype == torch.float64
        assert torch.equal(peeled, fat < depth)
        assert torch.equal(out, (depth * scale).double())  # the far neighbour's depth as it is


def test_bad_inputs():
    obj, depth, image = _scene()
    with pytest.raises(ValueError, match="image"):
        peel_rims(depth, image[:-1])
    with pytest.raises(ValueError, match="image"):
        peel_rims(depth, image.permute(2, 0, 1))
    with pytest.raises(ValueError, match="radius"):
        peel_rims(depth, image, passes=3, radius=2)  # a window narrower than the rim
    for bad in (dict(passes=0), dict(ratio=0.0), dict(threshold=-0.1), dict(passes=1.5)):
        with pytest.raises((ValueError, TypeError)):
            peel_rims(depth, image, **bad)
    with pytest.raises(ValueError):
        peel_rims(depth.masked_fill(obj, float("nan")), image)
