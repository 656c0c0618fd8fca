"""Self-supervised objectives: Neighbor2Neighbor sub-sampling, its regulariser, blind-spot masking."""

from __future__ import annotations

import contextlib

import pytest
import torch

from napari_hinet.training.losses import make_loss
from napari_hinet.training.selfsupervised import blind_spot_objective, neighbor_objective, neighbor_subsample


def test_neighbor_subsample_takes_two_adjacent_pixels_of_each_cell():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    choice = torch.randint(8, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    g1, g2 = neighbor_subsample(x, choice)
    assert g1.shape == g2.shape == (2, 3, 4, 4)
    for n in range(2):
        for i in range(4):
            for j in range(4):
                cell = x[n, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].flatten().tolist()
                a, b = g1[n, 0, i, j].item(), g2[n, 0, i, j].item()
                pa, pb = cell.index(a), cell.index(b)
                assert pa != pb and {pa, pb} in ({0, 1}, {2, 3}, {0, 2}, {1, 3})
                # the same positions in every channel
                offset = 64
                assert g1[n, 1, i, j].item() == a + offset and g2[n, 2, i, j].item() == b + 2 * offset


def _autocast():
    return contextlib.nullcontext()


def test_blind_spot_loss_sees_only_the_masked_pixels():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    captured = {}

    def model(inp):
        captured["input"] = inp
        out = inp.clone().requires_grad_(True)
        captured["out"] = out
        return [out, out]

    loss = blind_spot_objective(fraction=0.1)(model, x, x, _autocast)
    loss.backward()
    grad = captured["out"].grad[:, 0]
    changed = captured["input"][:, 0] != x[:, 0]
    masked = grad != 0
    assert masked.any() and masked.float().mean() < 0.2
    assert not (changed & ~masked).any()  # every replaced pixel is in the loss
    # replaced values come from the patch itself (a neighbour)
    assert set(captured["input"][:, 0][changed].tolist()) <= set(x.flatten().tolist())


def test_neighbor_regulariser_is_zero_for_a_linear_pass_through_and_adds_a_forward_pass():
    calls = []

    def identity(inp):
        calls.append(inp.shape)
        return [inp, inp]

    identity.training = True
    identity.eval = lambda: None
    identity.train = lambda mode=True: None
    x = torch.rand(1, 1, 16, 16)
    loss_fn = make_loss("l1")
    plain = neighbor_objective(loss_fn, gamma=0.0)
    reg = neighbor_objective(loss_fn, gamma=2.0)
    torch.manual_seed(1)
    a = plain(identity, x, x, _autocast)
    torch.manual_seed(1)
    b = reg(identity, x, x, _autocast)
    # for f = identity, f(g1) - g2 - (g1(f(y)) - g2(f(y))) = 0: the regulariser adds nothing
    assert float(a) == pytest.approx(float(b))
    assert calls[-1] == (1, 1, 16, 16) and calls[-2] == (1, 1, 8, 8)


class _Smoother(torch.nn.Module):
    """A fixed linear denoiser (3 x 3 mean), returned for both HINet stages."""

    def forward(self, x):
        out = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 1)
        return [out, out]


def test_sure_estimates_the_error_against_the_clean_image_without_seeing_it():
    from napari_hinet.training.selfsupervised import sure_mse, sure_objective

    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    clean = (0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy))[None, None].repeat(4, 1, 1, 1)
    sigma = 0.1
    noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
    variance = torch.full_like(noisy, sigma**2)
    model = _Smoother()
    true_mse = float(((model(noisy)[-1] - clean) ** 2).mean())
    # one seeded probe: the estimate is within 5 % of the true error; the plain error against the noisy image is not
    estimate = sure_mse()(model, noisy, variance)
    assert estimate == pytest.approx(true_mse, rel=0.05)
    assert float(((model(noisy)[-1] - noisy) ** 2).mean()) > 5 * true_mse
    # a wrong noise level moves the estimate (SURE is only as good as the variance it is given)
    assert abs(sure_mse()(model, noisy, 1.2 * variance) - true_mse) > 0.2 * true_mse
    # the training objective sums both stages' estimates (same model output twice here)
    torch.manual_seed(1)
    loss = sure_objective()(model, noisy, variance, _autocast)
    assert float(loss) == pytest.approx(2 * true_mse, rel=0.1)  # another single random probe
    # the validation estimate uses a seeded probe: the same number every time
    assert sure_mse()(model, noisy, variance) == estimate
