"""A tiny HINet with metadata, as our files carry it (fast exports and package tests)."""

from __future__ import annotations

import pytest
import torch

from napari_hinet.model import HINet


def make_tiny(in_chn: int = 1, normalization: str = "percentile", seed: int = 0) -> HINet:
    """HINet(in_chn, wf=8, depth=3) with seeded random weights and file-like metadata."""
    torch.manual_seed(seed)
    model = HINet(in_chn=in_chn, wf=8, depth=3, hin_position_left=0, hin_position_right=2).eval()
    model.metadata = {
        "name": "tiny-hinet",
        "task": "denoise",
        "patch_size": 32,
        "input_range": [0.0, 1.0],
        "normalization": normalization,
        "channels": "gray" if in_chn == 1 else "rgb",
        "licence": "MIT (test weights)",
        "training": {"data": {"pool": "none (random weights)"}, "steps": 0},
        "metrics": {"val_psnr": 1.5},
    }
    return model


@pytest.fixture
def tiny_model() -> HINet:
    return make_tiny()
