"""dreamer.scene.metrics: the seam step against a hand-computed case."""

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
