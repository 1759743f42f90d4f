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
