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


def test_pairs_where_the_cloud_shows_a_surface_behind_the_truth_are_left_out_of_the_seen_step():
    depth, truth, new = _case()
    # Rows 0-19 of the known side show the wall far behind an object the cloud never had.
    depth[:20, :16] = truth[:20, :16] * 1.8
    all_pairs = _seam_error(depth, truth, new, window=4)
    assert all_pairs > 0.5  # the see-through rows dominate the median
    seen = _seam_error(depth, truth, new, window=4, see_through=0.25)
    assert abs(seen - 0.03) < 1e-12  # only the rows that show the true surface: the 3% step
    # A known side 20% behind the truth is an alignment error, not a see-through: still counted.
    depth[:20, :16] = truth[:20, :16] * 1.2
    assert _seam_error(depth, truth, new, see_through=0.25) > 0.1
