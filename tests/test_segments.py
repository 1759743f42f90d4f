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


def test_an_object_error_one_view_makes_is_halved_and_the_gauge_stays(two_views):
    cams, renders = two_views
    logs = [torch.log(r.depth.double()) for r in renders]
    # In view 1 one large surface seen by both views is 8% too far; everything else is exact.
    labels = segment_labels(logs[1], torch.ones_like(logs[1], dtype=torch.bool), min_pixels=40)
    sizes = torch.bincount(labels.flatten())
    sizes[0] = 0
    target = labels == int(sizes.argmax())
    wrong = [logs[0], torch.where(target, logs[1] + 0.08, logs[1])]
    valid, K, c2w = _inputs(cams, wrong)
    offsets = segment_offsets(wrong, valid, K, c2w, [True, False], rounds=1)
    assert torch.equal(offsets[0], torch.zeros_like(offsets[0]))
    # The segment moves to the average of its own depth and the exact view's: half the error.
    assert abs(float(offsets[1][target].mean()) + 0.04) < 0.004
    assert float(offsets[1][~target].abs().max()) < 0.004


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
    with pytest.raises(ValueError, match="rounds"):
        segment_offsets(logs, valid, K, c2w, [True, False], rounds=0)


def test_pair_medians_are_the_per_pair_per_segment_medians():
    """The one-sort medians equal a loop over pairs and their segments (Tensor.median: the lower
    median), in the same order, with ties and segments below the sample floor."""
    from alignment.segments import _MIN_SAMPLES, _pair_medians

    g = torch.Generator().manual_seed(3)
    kp = torch.tensor([0, 0, 1, 2, 2])
    seg = torch.randint(0, 5, (5, 60), generator=g)
    seg[3] = torch.randint(0, 12, (60,), generator=g)  # small segments: below the sample floor
    r = torch.round(torch.randn(5, 60, generator=g, dtype=torch.float64) * 4) / 4  # many ties
    same = torch.rand(5, 60, generator=g) > 0.2
    expected = []
    for p in range(len(kp)):
        s_of, rp = seg[p][same[p]], r[p][same[p]]
        for s in torch.unique(s_of).tolist():
            rs = rp[s_of == s]
            if s and rs.numel() >= _MIN_SAMPLES:
                expected.append((int(kp[p]), s, float(rs.median())))
    small = [n for n in torch.bincount(seg[3][same[3]]).tolist()[1:] if 0 < n < _MIN_SAMPLES]
    assert len(expected) > 5 and small
    assert _pair_medians(kp, seg, r, same) == expected
