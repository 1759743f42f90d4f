"""The transmittance barrier (``opaque_weight``): it closes the cracks between splats that a
linear opacity loss leaves, and its gradient does not fade as a pixel nears opaque."""

import math

import pytest
import torch

from dreamer.cameras import Camera
from dreamer.splats import SplatConfig
from dreamer.splats.losses import transmittance_barrier
from dreamer.splats.rasterizer import rasterize


def test_the_barrier_pulls_a_nearly_opaque_pixel_as_hard_as_a_bare_one():
    # Pixel alpha from two Gaussians, 1 - (1 - a)(1 - b); the barrier's gradient on a is
    # -1 / (1 - a) per pixel (over the pixel count), whatever b is; the linear gap 1 - alpha
    # pulls a by (1 - b) only, which vanishes as the pixel nears opaque.
    a = torch.tensor([[0.5, 0.5, 0.5, 0.5]], requires_grad=True)
    b = torch.tensor([[0.0, 0.9, 0.97, 0.999]])
    alpha = 1 - (1 - a) * (1 - b)
    transmittance_barrier(alpha, opaque=0.995).backward()
    expected = torch.tensor([[-2.0, -2.0, -2.0, 0.0]]) / 4  # the last pixel is opaque enough: left alone
    assert torch.allclose(a.grad, expected, atol=1e-6), a.grad
    a.grad = None
    (1 - (1 - (1 - a) * (1 - b))).mean().backward()
    assert float(a.grad[0, 2]) > -0.01 and float(a.grad[0, 0]) == pytest.approx(-0.25)  # linear: fades 33x
    loss = transmittance_barrier(torch.tensor([[0.9, 0.999]]), opaque=0.995)
    assert float(loss) == pytest.approx((math.log(0.1) - math.log(0.005)) / 2, rel=1e-5)


def test_the_barrier_is_masked_and_checks_its_inputs():
    alpha = torch.full((3, 4), 0.5, requires_grad=True)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0] = True
    transmittance_barrier(alpha, mask).backward()
    assert (alpha.grad[~mask] == 0).all() and (alpha.grad[mask] != 0).all()
    assert float(transmittance_barrier(alpha.detach(), torch.zeros(3, 4, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match="opaque"):
        transmittance_barrier(alpha, opaque=1.0)
    with pytest.raises(ValueError, match="mask"):
        transmittance_barrier(alpha, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="opaque_alpha"):
        SplatConfig(opaque_alpha=1.5)
    with pytest.raises(ValueError, match="opaque_weight"):
        SplatConfig(opaque_weight=-1.0)


def _crack_pair():
    """Two opaque Gaussians (opacity 0.99, 1 px) side by side on a plane facing the camera,
    their centres 0.7 px left and right of a pixel's centre: that pixel is a crack between them
    (alpha about 0.97, under the 0.99 a video frame counts as covered)."""
    cam = Camera.from_fov(60.0, 16, 8)
    z = 4.0
    px = z / float(cam.fx)  # one pixel at the plane's depth
    centre = torch.tensor([(8.5 - float(cam.cx)) * px, (4.5 - float(cam.cy)) * px, z])  # pixel (row 4, col 8)
    means = centre + torch.tensor([[-0.7 * px, 0.0, 0.0], [0.7 * px, 0.0, 0.0]])
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2)
    log_scales = torch.full((2, 3), math.log(px))
    logits = torch.full((2,), math.log(0.99 / 0.01))
    sh = torch.zeros(2, 1, 3)
    return cam, means, quats, log_scales, logits, sh


def _train_crack(gap_loss, steps=100):
    """Optimise the pair's scales and opacities (the splat stage's learning rates) against
    ``gap_loss`` of the crack pixel plus a competing pull, the alpha of the pixels beside the
    pair (they should stay clear, as a colour loss keeps a Gaussian from bleeding over an edge).
    Returns the crack pixel's alpha at the end."""
    cam, means, quats, log_scales, logits, sh = _crack_pair()
    log_scales.requires_grad_(True)
    logits.requires_grad_(True)
    opt = torch.optim.Adam([{"params": [log_scales], "lr": 5e-3}, {"params": [logits], "lr": 5e-2}])
    for _ in range(steps):
        alpha = rasterize(means, quats, log_scales.exp(), logits.sigmoid(), sh, cam).alpha
        loss = gap_loss(alpha[4:5, 8:9]) + alpha[4, 6] + alpha[4, 10]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(rasterize(means, quats, log_scales.exp(), logits.sigmoid(), sh, cam).alpha[4, 8])


def test_a_crack_between_two_gaussians_is_closed_by_the_barrier_not_by_the_linear_loss():
    cam, means, quats, log_scales, logits, sh = _crack_pair()
    before = float(rasterize(means, quats, log_scales.exp(), logits.sigmoid(), sh, cam).alpha[4, 8])
    assert 0.95 < before < 0.99  # a crack to begin with
    barrier = _train_crack(lambda a: transmittance_barrier(a, opaque=0.995))
    linear = _train_crack(lambda a: (1 - a).mean())  # alpha_weight's term, at the same weight
    assert barrier > 0.99, barrier  # measured 0.9949
    assert linear < 0.9, linear  # measured 0.78: the competing pull wins and the crack opens


def test_the_barrier_reaches_the_parameters_but_not_densifications_statistic():
    """Densification reads the screen positions' gradient; the barrier is left out of it (it
    would split the Gaussians around a crack into smaller ones), but its gradient reaches every
    parameter."""
    from dreamer.splats.train import _make_optimizers, _step

    cam, means, quats, log_scales, logits, sh = _crack_pair()

    class Recorder:  # stands in for gsplat's strategy: records what densification would read
        def step_post_backward(self, params, optimizers, state, it, info, packed=False):
            state["grad2d"] = info["means2d"].grad.clone()

    def one_step(with_barrier):
        params = {k: torch.nn.Parameter(t.clone()) for k, t in
                  (("means", means), ("quats", quats), ("scales", log_scales), ("opacities", logits), ("sh0", sh),
                   ("shN", torch.zeros(2, 0, 3)))}
        params["shN"].requires_grad_(False)
        cfg = SplatConfig(iterations=10, refine_stop_iter=5, opaque_weight=1.0, device="cpu")
        out = rasterize(params["means"], params["quats"], params["scales"].exp(), params["opacities"].sigmoid(),
                        params["sh0"], cam)
        out.info["means2d"].retain_grad()
        loss = 1e-4 * (out.rgb ** 2).mean()  # a faint pull toward black: less opacity
        barrier = transmittance_barrier(out.alpha) if with_barrier else None
        state = {}
        opt = _make_optimizers(params, cfg, 1.0)
        before = params["opacities"].detach().clone()
        _step(loss, params, opt, Recorder(), state, out.info, cfg, 1.0, 0, [], 0, None, barrier)
        return state["grad2d"], params["opacities"].detach() - before

    plain_grad, plain_move = one_step(False)
    barrier_grad, barrier_move = one_step(True)
    assert torch.equal(plain_grad, barrier_grad)
    assert (plain_move < 0).all() and (barrier_move > 0).all()  # the barrier's pull wins the opacity step
