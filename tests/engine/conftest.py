"""Small HINets for the engine tests (fast on 2 CPU cores)."""

from __future__ import annotations

import pytest
import torch

from napari_hinet.model import HINet


def _tiny(in_chn: int = 3, seed: int = 0, **kwargs) -> HINet:
    torch.manual_seed(seed)
    return HINet(in_chn=in_chn, wf=8, depth=3, **kwargs).eval()


@pytest.fixture
def tiny() -> HINet:
    """RGB HINet(wf=8, depth=3), seeded random weights."""
    return _tiny()


@pytest.fixture
def tiny_gray() -> HINet:
    """1-channel HINet(wf=8, depth=3), seeded random weights."""
    return _tiny(in_chn=1)


@pytest.fixture
def identity() -> HINet:
    """RGB HINet whose last conv is zero, so out_2 == input exactly (tests the plumbing)."""
    model = _tiny()
    with torch.no_grad():
        model.last.weight.zero_()
        model.last.bias.zero_()
    return model


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; with several threads a busy machine makes
    OpenMP wait for descheduled workers (100x slower on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
