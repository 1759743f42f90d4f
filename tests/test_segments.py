"""alignment.segments: per-surface consensus between views, on the procedural world."""

import pytest
import torch

from alignment.segments import segment_labels, segment_offsets
from dreamer.cameras import DEFAULT_FOCAL_512, Camera, rotation_y
from dreamer.worlds import ProceduralWorld

SIZE = 64


@pytest.fixture(scope="module")
def two_views():
    world = ProceduralWorld()
    cams = []
    for yaw in (0.0, 20.0):
        c2w = torch.eye(4)
        c2w[:3, :3] = rotation_y(yaw)
        cams.append(Camera.from_focal(DEFAULT_FOCAL_512 * SIZE / 512, SIZE, SIZE, c2w))
    renders = [world.render(c) for c in cams]
    return cams, renders


def _inputs(cams, logs):
    K = torch.stack([c.K.double() for c in cams])
    c2w = torch.stack([c.c2w.double() for c in cams])
    return [torch.ones_like(x, dtype=torch.bool) for x in logs], K, c2w


def _largest_segment(log_depth):
    labels = segment_labels(log_depth, torch.ones_like(log_depth, dtype=torch.bool), min_pixels=40)
    sizes = torch.bincount(labels.flatten())
    sizes[0] = 0
    return labels, labels == int(sizes.argmax())


def test_an_object_error_moves_to_the_gauge_view_and_the_gauge_stays(two_views):
    cams, renders = two_views
    logs = [torch.log(r.depth.double()) for r in renders]
    # In view 1 one large surface seen by both views is 8% too far; everything else is exact.
    labels, target = _largest_segment(logs[1])
    wrong = [logs[0], torch.where(target, logs[1] + 0.08, logs[1])]
    valid, K, c2w = _inputs(cams, wrong)
    offsets = segment_offsets(wrong, valid, K, c2w, [True, False])
    assert torch.equal(offsets[0], torch.zeros_like(offsets[0]))
    # The gauge view does not move, so the surface both see ends where it has it: no error left
    # (the median: the surface's rim is a depth edge now, left to the view's level).
    assert abs(float(offsets[1][target].median()) + 0.08) < 0.004
    # The other segments the gauge view sees stay (a view level would move them all).
    others = (labels > 0) & ~target & (offsets[1].abs() < 0.004)
    assert int(others.sum()) > 0.3 * int(((labels > 0) & ~target).sum())


def test_a_view_level_moves_the_surfaces_no_other_view_sees(two_views):
    """A view 6% too far everywhere: every pixel moves back by 6%, also on the surfaces the
    other view never sees (their only evidence is the level of the view's other surfaces)."""
    cams, renders = two_views
    logs = [torch.log(r.depth.double()) for r in renders]
    wrong = [logs[0], logs[1] + 0.06]
    valid, K, c2w = _inputs(cams, wrong)
    offsets = segment_offsets(wrong, valid, K, c2w, [True, False])
    # Which pixels of view 1 view 0 cannot see (outside its image).
    cam0, cam1 = cams
    H, W = logs[1].shape
    vv, uu = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    z = renders[1].depth.double()
    d = torch.stack([(uu - cam1.K[0, 2]) / cam1.K[0, 0], (vv - cam1.K[1, 2]) / cam1.K[1, 1], torch.ones_like(uu)], -1)
    world = (d * z[..., None]) @ cam1.c2w[:3, :3].double().T + cam1.c2w[:3, 3].double()
    w2c = torch.linalg.inv(cam0.c2w.double())
    pc = world @ w2c[:3, :3].T + w2c[:3, 3]
    u0 = cam0.K[0, 0] * pc[..., 0] / pc[..., 2] + cam0.K[0, 2]
    unseen = (u0 < 0) | (u0 > W)
    assert int(unseen.sum()) > 0.05 * H * W
    assert float((offsets[1] + 0.06).abs().max()) < 0.006
    assert float((offsets[1][unseen] + 0.06).abs().max()) < 0.006


def test_exact_views_get_no_offsets(two_views):
    cams, renders = two_views
    logs = [torch.log(r.depth.double()) for r in renders]
    valid, K, c2w = _inputs(cams, logs)
    offsets = segment_offsets(logs, valid, K, c2w, [True, False])
    assert float(offsets[1].abs().max()) < 0.003


def test_bad_inputs_are_refused(two_views):
    cams, renders = two_views
    logs = [torch.log(r.depth.double()) for r in renders]
    valid, K, c2w = _inputs(cams, logs)
    with pytest.raises(ValueError, match="one valid mask"):
        segment_offsets(logs, valid[:1], K, c2w, [True, False])
    with pytest.raises(ValueError, match="priors"):
        segment_offsets(logs, valid, K, c2w, [True, False], own_prior=0.0)


def test_link_medians_are_the_per_pair_per_segment_pair_medians():
    """The one-sort medians equal a loop over pairs and their (segment, other view's segment)
    pairs (Tensor.median: the lower median), in the same order, with ties and links below the
    sample floor."""
    from alignment.segments import _MIN_SAMPLES, _link_medians

    g = torch.Generator().manual_seed(3)
    seg = torch.randint(0, 3, (5, 200), generator=g)
    seg_j = torch.randint(0, 3, (5, 200), generator=g)
    seg[3] = torch.randint(0, 40, (200,), generator=g)  # small segments: below the sample floor
    r = torch.round(torch.randn(5, 200, generator=g, dtype=torch.float64) * 4) / 4  # many ties
    same = torch.rand(5, 200, generator=g) > 0.2
    expected = []
    for p in range(5):
        use = same[p] & (seg[p] > 0) & (seg_j[p] > 0)
        for s in torch.unique(seg[p][use]).tolist():
            for h in torch.unique(seg_j[p][use]).tolist():
                rs = r[p][use & (seg[p] == s) & (seg_j[p] == h)]
                if rs.numel() >= _MIN_SAMPLES:
                    expected.append((p, s, h, float(rs.median())))
    small = [n for n in torch.bincount(seg[3][same[3]]).tolist()[1:] if 0 < n < _MIN_SAMPLES]
    assert len(expected) > 5 and small
    assert _link_medians(seg, seg_j, r, same) == expected
