"""Tests of the synthetic degradation models (napari_hinet.data.degrade)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_hinet.data import degrade

REFERENCE = Path("/work/shared/tools/degrade.py")  # optional cross-check, skipped elsewhere


def _image(shape=(128, 128, 3), seed=0) -> np.ndarray:
    """A smooth random test image in [0.1, 0.9]."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), sigma=(4, 4, 0)[: len(shape)])
    img = (img - img.min()) / (img.max() - img.min())
    return (0.1 + 0.8 * img).astype(np.float32)


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, s: degrade.gaussian(x, 25, s),
        lambda x, s: degrade.poisson_gaussian(x, 30, 2, s),
        lambda x, s: degrade.motion_blur(x, s)[0],
        lambda x, s: degrade.rain(x, s),
    ],
    ids=["gaussian", "poisson_gaussian", "motion_blur", "rain"],
)
@pytest.mark.parametrize("shape", [(64, 80), (64, 80, 3)])
def test_seeded_float32_same_shape(fn, shape):
    x = _image(shape)
    a, b, c = fn(x, 3), fn(x, 3), fn(x, 4)
    assert a.dtype == np.float32 and a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a list seed and a Generator work too
    np.testing.assert_array_equal(fn(x, [1, 2]), fn(x, [1, 2]))
    assert fn(x, np.random.default_rng(5)).shape == x.shape


def test_gaussian_noise_std():
    x = np.full((256, 256), 0.5, np.float32)
    y = degrade.gaussian(x, 25.5, 0)
    assert abs((y - x).std() - 0.1) < 0.003
    assert abs((y - x).mean()) < 0.003
    assert y.max() > 0.9 or y.min() < 0.1  # not clipped (values can leave [0, 1])
    with pytest.raises(ValueError, match="sigma_255"):
        degrade.gaussian(x, -1)


def test_poisson_gaussian_variance_follows_intensity():
    photons, read = 50.0, 3.0
    for level in (0.1, 0.8):
        x = np.full((300, 300), level, np.float32)
        y = degrade.poisson_gaussian(x, photons, read, 0)
        expected_var = level / photons + (read / photons) ** 2
        assert abs(y.mean() - level) < 0.01
        assert abs(y.var() / expected_var - 1) < 0.05
    with pytest.raises(ValueError, match="photons"):
        degrade.poisson_gaussian(x, 0, 1)


def test_motion_kernel_properties():
    sizes = set()
    for seed in range(30):
        k = degrade.motion_kernel(seed)
        size = k.shape[0]
        sizes.add(size)
        assert k.shape == (size, size) and size % 2 == 1 and 15 <= size <= 31
        assert k.dtype == np.float32 and (k >= 0).all()
        assert abs(k.sum() - 1) < 1e-5
        y, x = np.mgrid[:size, :size]
        c = (size - 1) / 2
        assert abs((k * y).sum() - c) < 0.6 and abs((k * x).sum() - c) < 0.6  # centre of mass
        assert np.count_nonzero(k > 1e-4) > 3  # a path, not a point
    assert len(sizes) > 4
    assert degrade.motion_kernel(0, size=9).shape == (9, 9)
    with pytest.raises(ValueError, match="odd"):
        degrade.motion_kernel(0, size=8)


def test_blur_is_a_true_convolution():
    x = np.zeros((31, 31), np.float32)
    x[15, 15] = 1
    k = np.zeros((5, 5), np.float32)
    k[0, 1], k[4, 4] = 0.25, 0.75  # asymmetric: convolution flips it around the centre
    y = degrade.blur(x, k)
    assert abs(y[13, 14] - 0.25) < 1e-6 and abs(y[17, 17] - 0.75) < 1e-6
    assert abs(y.sum() - 1) < 1e-5
    flat = np.full((40, 50, 3), 0.3, np.float32)
    np.testing.assert_allclose(
        degrade.blur(flat, degrade.motion_kernel(1)), flat, atol=1e-5
    )  # mirror boundary


def test_motion_blur_returns_kernel_and_clips():
    x = _image((96, 96, 3))
    y, k = degrade.motion_blur(x, 2)
    assert y.min() >= 0 and y.max() <= 1
    assert 15 <= k.shape[0] <= 31
    np.testing.assert_allclose(
        degrade.motion_blur(x, 2, noise_sigma_255=0)[0], np.clip(degrade.blur(x, k), 0, 1), atol=1e-6
    )


def test_rain_light_and_heavy_strengths():
    x = _image((192, 192, 3), seed=1) * 0.6
    light = [_psnr(degrade.rain(x, s, "light"), x) for s in range(6)]
    heavy = [_psnr(degrade.rain(x, s, "heavy"), x) for s in range(6)]
    # calibration targets of data_sources.md §4: light ~24.6 dB, heavy ~13.4 dB (RGB)
    assert 19 < np.mean(light) < 30
    assert 9 < np.mean(heavy) < 17
    y = degrade.rain(x, 0, "heavy")
    assert y.min() >= 0 and y.max() <= 1 and (y >= x - 1e-6).all()  # additive
    unclipped = (y[..., 0] < 1) & (y[..., 1] < 1)
    d0, d1 = (y - x)[..., 0][unclipped], (y - x)[..., 1][unclipped]
    np.testing.assert_allclose(d0, d1, atol=1e-6)  # the same streaks on all channels
    with pytest.raises(ValueError, match="rain mode"):
        degrade.rain(x, 0, "drizzle")


def test_rain_streaks_are_near_vertical():
    layer = degrade.rain_layer((256, 256), 3, "light")
    gy, gx = np.gradient(layer.astype(np.float64))
    assert (gx**2).sum() > 1.5 * (gy**2).sum()  # streaks vary across x more than along y


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference degrade.py not present on this machine")
def test_statistics_match_the_reference_implementation():
    spec = importlib.util.spec_from_file_location("reference_degrade", REFERENCE)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    x = _image((160, 160, 3), seed=2) * 0.7
    for mode, tol in (("light", 2.0), ("heavy", 1.5)):
        ours = np.mean([_psnr(degrade.rain(x, s, mode), x) for s in range(8)])
        theirs = np.mean([_psnr(ref.rain(x, s, mode), x) for s in range(8)])
        assert abs(ours - theirs) < tol, (mode, ours, theirs)

    def spread(k):  # RMS radius of a kernel around its centre, pixels
        y, x_ = np.mgrid[: k.shape[0], : k.shape[1]]
        c = (k.shape[0] - 1) / 2
        return np.sqrt((k * ((y - c) ** 2 + (x_ - c) ** 2)).sum())

    ours = np.mean([spread(degrade.motion_kernel(s)) for s in range(100, 200)])
    theirs = np.mean([spread(ref.motion_kernel(s)) for s in range(300, 400)])
    assert abs(ours / theirs - 1) < 0.15, (ours, theirs)
    y_ours = degrade.poisson_gaussian(np.full((200, 200), 0.4, np.float32), 20, 2, 0)
    y_ref = ref.poisson_gaussian(np.full((200, 200), 0.4, np.float32), 20, 2, 0)
    assert abs(y_ours.std() / y_ref.std() - 1) < 0.05
