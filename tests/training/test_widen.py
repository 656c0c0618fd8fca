"""widen(): a wider HINet that starts with the narrow model's output and trains its new channels."""

from __future__ import annotations

import pytest
import torch

from napari_hinet.model import HINet
from napari_hinet.training.widen import widen


def _trained_like(in_chn: int, wf: int, depth: int, seed: int = 0) -> HINet:
    """A narrow model with every parameter random (norm scales too), as a trained one is."""
    torch.manual_seed(seed)
    model = HINet(in_chn, wf=wf, depth=depth)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model.eval()


@pytest.mark.parametrize(("in_chn", "wf", "new_wf", "depth"), [(3, 8, 12, 3), (1, 8, 16, 4), (3, 16, 24, 2)])
def test_the_wider_model_computes_the_same_output(in_chn, wf, new_wf, depth):
    narrow = _trained_like(in_chn, wf, depth)
    wide = widen(narrow, new_wf).eval()
    assert wide.config == {**narrow.config, "wf": new_wf}
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in narrow.parameters())
    x = torch.rand(2, in_chn, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in zip(narrow(x), wide(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_the_new_channels_compute_and_learn():
    narrow = _trained_like(3, 8, 3)
    wide = widen(narrow, 12).train()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    features = {}
    wide.conv_01.register_forward_hook(lambda m, i, o: features.setdefault("stem", o))
    out = wide(x)[1]
    new = [4, 5, 10, 11]  # level 0 of width 8 -> 12: two new channels at the end of each half
    assert features["stem"][:, new].abs().mean() > 0  # random incoming weights: they are not dead
    ((out - x) ** 2).mean().backward()
    # the zero weights *from* the new channels get gradient, so training starts using them
    grad = wide.down_path_1[0].conv_1.weight.grad
    assert grad[:, new].abs().sum() > 0
    assert wide.down_path_1[0].conv_1.weight[[0, 1, 2, 3, 6, 7, 8, 9]][:, new].abs().sum() == 0


def test_widen_rejects_a_narrower_or_odd_width():
    narrow = _trained_like(3, 8, 2)
    for wf in (6, 9):
        with pytest.raises(ValueError, match="at least 8"):
            widen(narrow, wf)
