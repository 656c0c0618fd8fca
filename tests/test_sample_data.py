"""The napari sample data: each sample is a degraded image plus its clean twin, made reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet import _sample_data
from napari_hinet._sample_data import SAMPLES


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / mse))


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_sample_is_a_degraded_image_with_its_clean_twin(key: str) -> None:
    function, _task = SAMPLES[key]
    layers = function()
    assert len(layers) == 2
    (clean, clean_kw, clean_type), (degraded, degraded_kw, degraded_type) = layers
    assert clean_type == degraded_type == "image"
    assert clean.shape == degraded.shape and clean.dtype == degraded.dtype
    assert "(clean)" in clean_kw["name"] and clean_kw["visible"] is False
    assert clean_kw["name"].split(" (")[0] == degraded_kw["name"].split(" (")[0]
    # small enough to open instantly, big enough to show tiling
    assert 256 <= min(clean.shape[:2]) and max(clean.shape[:2]) <= 512
    peak = 255.0 if clean.dtype == np.uint8 else float(clean.max())
    psnr = _psnr(clean, degraded, peak)
    assert 12.0 < psnr < 32.0, f"{key}: degraded image PSNR {psnr:.1f} dB is not a visible degradation"


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_sample_is_reproducible(key: str) -> None:
    function, _task = SAMPLES[key]
    first, second = function(), function()
    np.testing.assert_array_equal(first[1][0], second[1][0])


def test_rgb_samples_are_flagged_rgb_and_fluorescence_is_uint16() -> None:
    for key in ("noisy_photo", "blurred_photo", "rainy_photo"):
        data, kwargs, _ = SAMPLES[key][0]()[1]
        assert data.ndim == 3 and data.shape[-1] == 3 and kwargs["rgb"] is True
    data, kwargs, _ = _sample_data.noisy_fluorescence()[1]
    assert data.dtype == np.uint16 and data.ndim == 2
    assert kwargs["colormap"] == "gray"


def test_every_shipped_sample_file_has_a_licence_entry() -> None:
    text = (_sample_data.SAMPLES_DIR / "LICENSES.md").read_text()
    files = [p.name for p in _sample_data.SAMPLES_DIR.iterdir() if p.suffix in (".png", ".tif")]
    assert files
    for name in files:
        assert f"`{name}`" in text, f"{name} has no licence entry in samples/LICENSES.md"
