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
