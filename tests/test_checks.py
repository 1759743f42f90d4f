"""The one vocabulary of input checks (dreamer/checks.py): error types, messages, named dimensions."""

import numpy as np
import pytest
import torch

from dreamer import checks


def test_named_dimensions_bind_across_inputs():
    image = torch.zeros(4, 6, 3)
    sizes = checks.check_shape(image, "image", ["H", "W", 3])
    assert sizes == {"H": 4, "W": 6}
    checks.check_shape(torch.zeros(4, 6), "depth", ["H", "W"], sizes=sizes)
    with pytest.raises(ValueError, match=r"depth must have shape \[H,W\] with W=6 .*got \(4, 5\)"):
        checks.check_shape(torch.zeros(4, 5), "depth", ["H", "W"], sizes=sizes)
    with pytest.raises(ValueError, match=r"pair must have shape \[N,N\] with N=2"):
        checks.check_shape(torch.zeros(2, 3), "pair", ["N", "N"])


def test_shapes_exact_sizes_and_leading_dims():
    checks.check_shape(torch.zeros(2, 5, 4, 4), "c2w", ["*", 4, 4])
    checks.check_shape(torch.zeros(4, 4), "c2w", ["*", 4, 4])
    with pytest.raises(ValueError, match=r"image must have shape \[H,W,3\], got \(4, 4, 4\)"):
        checks.check_shape(torch.zeros(4, 4, 4), "image", ["H", "W", 3])
    with pytest.raises(ValueError, match=r"must have shape \[...,4,4\]"):
        checks.check_shape(torch.zeros(4), "c2w", ["*", 4, 4])
    with pytest.raises(TypeError, match=r"image must be a torch.Tensor \[H,W,3\], got list"):
        checks.check_shape([[0.0]], "image", ["H", "W", 3])


def test_dtypes_by_kind_and_exactly():
    checks.check_dtype(torch.zeros(2, dtype=torch.float16), "x", "float")
    checks.check_dtype(torch.zeros(2, dtype=torch.int32), "x", "int")
    checks.check_dtype(torch.zeros(2, dtype=torch.bool), "x", "bool")
    with pytest.raises(ValueError, match="mask must be a bool tensor, got dtype torch.uint8"):
        checks.check_dtype(torch.zeros(2, dtype=torch.uint8), "mask", "bool")
    with pytest.raises(ValueError, match="x must be an integer tensor"):
        checks.check_dtype(torch.zeros(2, dtype=torch.bool), "x", "int")
    with pytest.raises(ValueError, match="image must have dtype torch.float32, got torch.float64"):
        checks.check_dtype(torch.zeros(2, dtype=torch.float64), "image", torch.float32)


def test_finite_and_positive_count_the_bad_values_where_asked():
    d = torch.tensor([[1.0, float("nan")], [0.0, 2.0]])
    with pytest.raises(ValueError, match="depth must be finite, got 1 NaN/inf values"):
        checks.check_finite(d, "depth")
    where = torch.tensor([[True, False], [True, True]])
    checks.check_finite(d, "depth", where=where)
    with pytest.raises(ValueError, match=r"depth must be > 0 on the hole, got 1 values <= 0 \(min 0\)"):
        checks.check_positive(d, "depth", where=where, where_name="the hole")
    checks.check_positive(d, "depth", where=torch.tensor([[True, False], [False, True]]))
    with pytest.raises(ValueError, match="depth must be finite, got 1 NaN/inf values"):
        checks.check_positive(torch.tensor([1.0, float("inf")]), "depth")


@pytest.mark.parametrize("value", [True, 2.0, "3", None, 1 + 0j])
def test_int_settings_refuse_bools_floats_and_strings(value):
    with pytest.raises(TypeError, match="steps must be an integer >= 1, got"):
        checks.check_int(value, "steps", min=1)


def test_int_settings_ranges_and_numpy_integers():
    assert checks.check_int(np.int64(3), "n", min=1) == 3
    assert type(checks.check_int(np.int64(3), "n")) is int
    with pytest.raises(ValueError, match=r"level must be an integer >= 0 and <= 4, got 5"):
        checks.check_int(5, "level", min=0, max=4)


def test_numbers_finite_in_range():
    assert checks.check_number(2, "scale", min=0, open_min=True) == 2.0
    for bad in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            checks.check_number(bad, "scale", min=0, open_min=True)
    with pytest.raises(TypeError, match="guidance must be a number, got True"):
        checks.check_number(True, "guidance")
    with pytest.raises(ValueError, match=r"fraction must be a finite number >= 0 and <= 1, got 1.5"):
        checks.check_number(1.5, "fraction", min=0, max=1)


def test_choice_lists_the_choices():
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b'; got 'c'"):
        checks.check_choice("c", "mode", ("a", "b"))


def test_images_maps_masks_and_depth():
    checks.check_image(torch.zeros(4, 6, 3), height=4, width=6)
    with pytest.raises(ValueError, match=r"image must have shape \[H,W,3\] with H=8"):
        checks.check_image(torch.zeros(4, 6, 3), height=8)
    with pytest.raises(ValueError, match="image must be a float tensor, got dtype torch.uint8"):
        checks.check_image(torch.zeros(4, 6, 3, dtype=torch.uint8))
    checks.check_mask(torch.zeros(4, 6, dtype=torch.bool), "hole", height=4, width=6)
    with pytest.raises(ValueError, match="hole must be a bool tensor"):
        checks.check_mask(torch.zeros(4, 6), "hole")
    with pytest.raises(ValueError, match="estimate must be > 0"):
        checks.check_depth(torch.zeros(4, 6), "estimate")
    with pytest.raises(ValueError, match=r"depth must have shape \[H,W\]"):
        checks.check_depth(torch.ones(4, 6, 1))


def test_check_positive_raises_exactly_when_a_value_where_read_is_not_finite_and_positive():
    """The one-reduction test against the rule written out, on maps with a bad value of each kind
    inside or outside the mask, in float32 and float64."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for bad in (0.0, -1.0, float("nan"), float("inf"), float("-inf"), None):
            for masked in (False, True):
                d = torch.rand(6, 7, generator=g, dtype=dtype) + 0.5
                where = torch.rand(6, 7, generator=g) < 0.5 if masked else None
                if bad is not None:
                    d[2, 3] = bad
                expected = bad is not None and (where is None or bool(where[2, 3]))
                if expected:
                    with pytest.raises(ValueError, match="depth"):
                        checks.check_positive(d, "depth", where=where)
                else:
                    assert checks.check_positive(d, "depth", where=where) is d


def test_check_text_refuses_control_characters_other_than_tabs_and_line_breaks():
    from dreamer.checks import check_text

    fine = "a room\twith a view\r\nand \u00e9 \u6771 \U0001F600 \u200d\u2028"
    assert check_text(fine, "prompt") is fine
    for code in [*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), *range(0x7f, 0xa0)]:
        with pytest.raises(ValueError, match=rf"^prompt must be text without control characters .*\(U\+{code:04X}\) "
                                             r"at character 3$"):
            check_text(f"ab{chr(code)}c", "prompt")
    with pytest.raises(ValueError, match=r"at line 3, character 1$"):
        check_text("one\ntwo\n\x00", "prompt")
    with pytest.raises(TypeError, match="prompt must be text"):
        check_text(b"bytes", "prompt")
