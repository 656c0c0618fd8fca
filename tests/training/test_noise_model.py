"""The Poisson-Gaussian noise model fitted to one noisy image."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.data import degrade
from napari_hinet.training.noise_model import NoiseModel, estimate_noise_model, variance_map


def _smooth_image(size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (0.05 + 0.9 * (0.5 + 0.5 * np.sin(3 * xx) * np.cos(2 * yy)) * xx).astype(np.float32)


@pytest.mark.parametrize("photons", [20, 100])
def test_fits_the_simulated_camera_noise(photons):
    clean = _smooth_image()
    read = 0.02 * photons
    noisy = degrade.poisson_gaussian(clean, photons, read, seed=3)
    fitted = estimate_noise_model(noisy)
    true = NoiseModel(1 / photons, (read / photons) ** 2)
    assert fitted.a == pytest.approx(true.a, rel=0.1)
    # the variance where the image lives (0.05 .. 0.95) is right within 10 %
    levels = np.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(fitted.variance(levels), true.variance(levels), rtol=0.1)


def test_pure_gaussian_noise_gives_a_flat_model_and_a_rgb_image_is_accepted():
    rng = np.random.default_rng(0)
    clean = _smooth_image(128)
    noisy = np.repeat(clean[..., None], 3, axis=2) + rng.normal(0, 0.05, (128, 128, 3))
    fitted = estimate_noise_model(noisy)
    np.testing.assert_allclose(fitted.variance(np.array([0.1, 0.9])), 0.05**2, rtol=0.15)
    assert variance_map(noisy, fitted).shape == (128, 128, 3)


def test_rescaled_follows_the_intensity_mapping():
    model = NoiseModel(a=2.0, b=9.0)  # e.g. ADU: gain 2, read noise 3 ADU
    low, scale = 100.0, 1000.0
    x = np.array([100.0, 600.0, 1100.0])
    mapped = model.rescaled(low, scale)
    np.testing.assert_allclose(mapped.variance((x - low) / scale), model.variance(x) / scale**2, rtol=1e-6)


def test_too_small_an_image_is_refused_with_its_shape():
    with pytest.raises(ValueError, match="at least 8 x 8"):
        estimate_noise_model(np.zeros((4, 50)))
