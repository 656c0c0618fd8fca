"""The bundled models load by name and restore a held-out test image (skimage astronaut / camera,
both in the test split, never trained on) clearly better than the degraded input.

Margins are set from measurements at export (see docs/models.md), about half the measured gain.
Skipped where the weights are not in the package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hinet.data import degrade
from napari_hinet.registry import bundled_weights_dir

# name -> (channels, degradation, required gain over the input in dB)
CASES = {
    "hinet-denoise-fluo": ("gray", lambda x: degrade.poisson_gaussian(x, 20, 0.4, 0), 5.0),
    "hinet-denoise-photo": ("rgb", lambda x: degrade.gaussian(x, 25, 0), 5.0),
    "hinet-deblur-photo": ("rgb", lambda x: degrade.motion_blur(x, 0)[0], 0.5),
    "hinet-derain-photo": ("rgb", lambda x: degrade.rain(x, 0, "heavy"), 6.0),
}


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2))


def _test_image(channels: str) -> np.ndarray:
    from skimage import data

    if channels == "gray":
        return data.camera()[128:384, 128:384].astype(np.float32) / 255.0
    return data.astronaut()[64:320, 128:384].astype(np.float32) / 255.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundled_model_restores_held_out_image(name):
    if not (bundled_weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"{name} is not bundled in this checkout")
    from napari_hinet.checkpoints import load_model
    from napari_hinet.model import run_any_size

    channels, degrade_fn, margin = CASES[name]
    model = load_model(name)
    meta = model.metadata
    assert meta["channels"] == channels and meta["task"] in name
    assert meta["training"]["split"]["test_natural"]  # the split is recorded
    assert meta["metrics"]["val_psnr"] > meta["metrics"]["val_psnr_start"]
    clean = _test_image(channels)
    noisy = degrade_fn(clean)
    x = torch.from_numpy(noisy[None, None] if noisy.ndim == 2 else noisy.transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        y = run_any_size(model.float().eval(), x)[0].numpy()
    y = y[0] if noisy.ndim == 2 else y.transpose(1, 2, 0)
    gain = _psnr(y, clean) - _psnr(noisy, clean)
    assert gain > margin, f"{name}: {gain:.2f} dB gain, need > {margin}"
