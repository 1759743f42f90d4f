"""A partial photo (a 3D scene's render with pixels no point covers) guides only where it is
known: unknown pixels pull toward nothing, in both photo modes."""

import torch

from zoom.photo import photo_guidance, photo_loss, photo_replace_low, prepare_photo_mask


def _stack(seed=0, n=3, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(3, size, size, generator=g)


def _left_half(size=32):
    w = torch.zeros(1, size, size)
    w[..., : size // 2] = 1.0
    return w


def test_unknown_pixels_change_neither_the_loss_nor_the_guidance():
    x, photo = _stack()
    w = _left_half()
    other = photo.clone()
    other[..., 16:] = 0.0  # what an uncovered render holds there: black
    assert torch.equal(photo_loss(x, photo, weight=w), photo_loss(x, other, weight=w))
    # The weighted loss is the plain loss over the known pixels (level 0 alone: one level).
    plain = ((x[:1, :, :, :16] - photo[:, :, :16]) ** 2).mean()
    assert torch.allclose(photo_loss(x[:1], photo, weight=w), plain)
    # Guidance moves level 0's unknown pixels only through the deeper levels' downsampled terms,
    # which see the centre; a pixel of level 0 outside the centre and unknown does not move.
    steered = photo_guidance(x, other, steps=5, lr=0.05, weight=w)
    assert torch.equal(steered[0, :, :4, 28:], x[0, :, :4, 28:])
    assert not torch.equal(steered[0, :, :4, :4], x[0, :, :4, :4])
    # Without the mask the black half pulls those pixels toward black.
    unmasked = photo_guidance(x, other, steps=5, lr=0.05)
    assert float(unmasked[0, :, :4, 28:].mean()) < float(x[0, :, :4, 28:].mean())


def test_replace_low_keeps_the_prediction_where_the_photo_is_unknown():
    x, photo = _stack(1)
    w = torch.zeros(1, 32, 32)
    out = photo_replace_low(x, photo, keep_bands=2, weight=w)  # nothing known: nothing replaced
    assert torch.allclose(out, x, atol=1e-5)
    full = photo_replace_low(x, photo, keep_bands=2, weight=torch.ones(1, 32, 32))
    assert torch.allclose(full, photo_replace_low(x, photo, keep_bands=2), atol=1e-6)


def test_prepare_photo_mask_crops_like_the_photo():
    mask = torch.zeros(40, 80, dtype=torch.bool)
    mask[:, 20:60] = True  # the centre square of a 2:1 photo
    w = prepare_photo_mask(mask, 16, 16)
    assert w.shape == (1, 16, 16) and float(w.min()) > 0.99  # the centre crop is all known
