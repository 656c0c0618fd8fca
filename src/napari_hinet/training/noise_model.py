"""A Poisson-Gaussian noise model estimated from one noisy image.

Camera noise (shot + read noise) has a variance that grows linearly with the
signal: ``var(y | x) = a * x + b`` (Foi et al., "Practical Poissonian-Gaussian
noise modeling and fitting for single-image raw-data", IEEE TIP 2008), with
``a`` the Poisson scale (1 / photons per unit intensity) and ``b`` the variance
of the read noise, in the image's own units. :func:`estimate_noise_model` fits
``a`` and ``b`` to one image without any clean reference:

1. The noise is isolated with a high-pass residual: each pixel minus the mean of
   its 4 neighbours. For pixel-independent noise of local variance ``s2`` the
   residual has variance ``1.25 * s2``; smooth signal cancels out.
2. The signal is estimated by the 3 x 3 local mean.
3. The pixels are split into :data:`BINS` bins of equal count by that local
   mean; in each bin the residual's spread is measured robustly (the median
   absolute deviation, which ignores the edges and textures that leak into the
   residual) and turned into a noise variance (``(1.4826 * MAD)^2 / 1.25``).
4. ``a`` and ``b`` are the least-squares line through the bins' variances
   against their mean signal, clamped so both are >= 0 (pure Gaussian noise
   gives ``a = 0``); at least :data:`MIN_VARIANCE` remains of ``b``.

SURE fine-tuning (``ssl_method="sure"`` of :mod:`napari_hinet.training.selfsupervised`)
uses the model's variance at each pixel (:func:`variance_map`) when no noise model is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BINS", "MIN_VARIANCE", "NoiseModel", "estimate_noise_model", "local_mean", "variance_map"]

#: Intensity bins of equal pixel count for the variance fit (rule 3).
BINS = 16
#: Floor of the read-noise variance ``b`` (rule 4) and of every variance: keeps it > 0.
MIN_VARIANCE = 1e-8
_MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its sigma
_RESIDUAL_GAIN = 1.25  # variance of (pixel - mean of 4 neighbours) / variance of the noise


@dataclass(frozen=True)
class NoiseModel:
    """``var(y | x) = a * x + b`` in the image's units (``a`` >= 0; ``b`` may be
    negative for a camera offset: ``a * (x - offset) + read_variance``)."""

    a: float
    b: float

    def variance(self, signal: np.ndarray) -> np.ndarray:
        """Noise variance at each pixel of ``signal`` (negative signal counts as 0; at
        least :data:`MIN_VARIANCE`), float32."""
        return np.maximum(self.a * np.clip(signal, 0.0, None) + self.b, MIN_VARIANCE).astype(np.float32)

    def rescaled(self, low: float, scale: float) -> NoiseModel:
        """The same noise after the intensity mapping ``y -> (y - low) / scale``.

        With ``x = scale * x' + low``: ``var' = (a (scale x' + low) + b) / scale^2``.
        """
        return NoiseModel(self.a / scale, (self.a * low + self.b) / scale**2)


def _box3(img: np.ndarray) -> np.ndarray:
    """3 x 3 mean of a 2-D array, mirrored at the borders."""
    p = np.pad(img, 1, mode="reflect")
    h, w = img.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def local_mean(image: np.ndarray) -> np.ndarray:
    """The 3 x 3 local mean of each channel of an ``(H, W, C)`` image (rule 2), float32."""
    return np.stack([_box3(image[..., c].astype(np.float64)) for c in range(image.shape[2])], axis=2).astype(
        np.float32
    )


def estimate_noise_model(image: np.ndarray) -> NoiseModel:
    """Fit ``var = a * x + b`` to one noisy image ``(H, W)`` or ``(H, W, C)`` (rules 1-4).

    Args:
        image: float array, at least 8 x 8 pixels; all channels share one model.

    Returns:
        The fitted :class:`NoiseModel`, in the image's units.
    """
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or min(img.shape[:2]) < 8:
        raise ValueError(
            f"estimate_noise_model needs an (H, W) or (H, W, C) image of at least 8 x 8, got {image.shape}"
        )
    residuals, signals = [], []
    for c in range(img.shape[2]):
        x = img[..., c]
        p = np.pad(x, 1, mode="reflect")
        neighbours = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4.0
        residuals.append((x - neighbours)[1:-1, 1:-1].ravel())  # rule 1 (borders dropped)
        signals.append(_box3(x)[1:-1, 1:-1].ravel())  # rule 2
    residual, signal = np.concatenate(residuals), np.concatenate(signals)
    order = np.argsort(signal, kind="stable")
    means, variances = [], []
    for part in np.array_split(order, BINS):  # rule 3
        r = residual[part]
        mad = np.median(np.abs(r - np.median(r)))
        means.append(signal[part].mean())
        variances.append((_MAD_TO_SIGMA * mad) ** 2 / _RESIDUAL_GAIN)
    m, v = np.asarray(means), np.asarray(variances)
    if np.ptp(m) > 0:  # rule 4
        a, b = np.polyfit(m, v, 1)
    else:
        a, b = 0.0, float(v.mean())
    if a < 0:
        a, b = 0.0, float(v.mean())
    if b < MIN_VARIANCE:
        # A negative intercept: refit the slope through the floor.
        b = MIN_VARIANCE
        a = max(0.0, float(np.sum(m * (v - b)) / max(np.sum(m * m), 1e-30)))
    return NoiseModel(float(a), float(b))


def variance_map(image: np.ndarray, model: NoiseModel | None = None) -> np.ndarray:
    """Noise variance at each pixel of a noisy ``(H, W, C)`` image in its own units:
    ``model`` (default: :func:`estimate_noise_model` of the image) at the 3 x 3
    local mean of the image (rule 2); float32 ``(H, W, C)``."""
    img = np.asarray(image, np.float32)
    return (model or estimate_noise_model(img)).variance(local_mean(img))
