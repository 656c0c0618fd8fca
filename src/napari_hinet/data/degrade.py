"""Synthetic degradation models for training and evaluating restoration models.

Every function takes a *clean* float image with intensities in ``[0, 1]``, shaped
``(H, W)`` or ``(H, W, C)`` (channels last), and a ``seed``. The seed is an
``int``, a sequence of ints (e.g. ``[base_seed, crc32(file_name)]``), an existing
:class:`numpy.random.Generator` (consumed in place) or ``None`` (fresh entropy).
The same int/sequence seed always gives the same output. Outputs are float32
arrays of the input's shape.

Models (documented in ``docs/finetuning.md``):

* :func:`gaussian` -- additive white Gaussian noise, ``sigma_255`` on the 0..255
  scale; *not clipped* (the BSD68/Set12 convention).
* :func:`poisson_gaussian` -- camera noise of fluorescence microscopy:
  ``(Poisson(photons * x) + N(0, read_sigma^2)) / photons``. ``photons`` is the
  expected number of photo-electrons at intensity 1.0 and ``read_sigma`` the
  read-noise standard deviation in electrons (so ``read_sigma / photons`` is the
  read noise as a fraction of the intensity range). Not clipped.
* :func:`motion_blur` -- a random camera-shake kernel (:func:`motion_kernel`),
  a true 2-D convolution with mirror boundaries, then mild AWGN, clipped.
* :func:`rain` -- additive synthetic rain streaks ("light" or "heavy", in the
  style of Rain100L/Rain100H), the same streaks on every channel, clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, signal

__all__ = [
    "SeedLike",
    "blur",
    "gaussian",
    "make_rng",
    "motion_blur",
    "motion_kernel",
    "poisson_gaussian",
    "rain",
    "rain_layer",
]

SeedLike = int | Sequence[int] | np.random.Generator | None

#: Rain presets. rho: impulse density per pixel; length: streak length (px);
#: alpha: brightness of the brightest streaks; layers: number of streak layers.
RAIN_PRESETS: dict[str, dict] = {
    "light": {"layers": 1, "rho": (0.0005, 0.002), "length": (12.0, 30.0), "alpha": (0.4, 0.75)},
    "heavy": {"layers": 3, "rho": (0.002, 0.006), "length": (20.0, 45.0), "alpha": (0.6, 0.9)},
}


def make_rng(seed: SeedLike) -> np.random.Generator:
    """Return a numpy Generator for ``seed`` (a Generator is returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _as_float(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- noise
def gaussian(img: np.ndarray, sigma_255: float, seed: SeedLike = 0) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``sigma_255 / 255``. Not clipped."""
    x = _as_float(img)
    if sigma_255 < 0:
        raise ValueError(f"sigma_255 must be >= 0, got {sigma_255}")
    noise = make_rng(seed).standard_normal(x.shape, dtype=np.float32) * np.float32(sigma_255 / 255.0)
    return x + noise


def poisson_gaussian(img: np.ndarray, photons: float, read_sigma: float, seed: SeedLike = 0) -> np.ndarray:
    """Poisson shot noise at ``photons`` electrons per unit intensity plus Gaussian read noise.

    Args:
        img: clean image in [0, 1] (negative values are treated as 0).
        photons: expected photo-electrons at intensity 1.0 (> 0). Low = noisy.
        read_sigma: read-noise standard deviation in electrons (>= 0).
        seed: see the module docstring.

    Returns:
        ``(Poisson(photons * img) + N(0, read_sigma^2)) / photons`` as float32, on
        the clean image's scale; not clipped (may be < 0).
    """
    if photons <= 0:
        raise ValueError(f"photons must be > 0, got {photons}")
    if read_sigma < 0:
        raise ValueError(f"read_sigma must be >= 0, got {read_sigma}")
    x = np.clip(_as_float(img), 0.0, None)
    rng = make_rng(seed)
    electrons = rng.poisson(x.astype(np.float64) * photons).astype(np.float64)
    electrons += rng.normal(0.0, read_sigma, x.shape)
    return (electrons / photons).astype(np.float32)


# ----------------------------------------------------------------------------- blur
def _splat(points_yx: np.ndarray, size: int) -> np.ndarray:
    """Accumulate sub-pixel points onto a (size, size) grid with bilinear weights."""
    grid = np.zeros((size, size), np.float64)
    base = np.floor(points_yx).astype(int)
    frac = points_yx - base
    for dy in (0, 1):
        for dx in (0, 1):
            wy = frac[:, 0] if dy else 1.0 - frac[:, 0]
            wx = frac[:, 1] if dx else 1.0 - frac[:, 1]
            yy = np.clip(base[:, 0] + dy, 0, size - 1)
            xx = np.clip(base[:, 1] + dx, 0, size - 1)
            np.add.at(grid, (yy, xx), wy * wx)
    return grid


def motion_kernel(seed: SeedLike = 0, size: int | None = None, steps: int = 200) -> np.ndarray:
    """A random camera-shake blur kernel, float32 ``(K, K)``, summing to 1.

    The camera path is a 2-D random walk of ``steps`` unit moves. Its heading
    starts at a uniform random angle and changes at every step by ``N(0, c^2)``
    with ``c ~ U(0.02, 0.25)`` rad; with probability 0.3 it also turns suddenly
    once by ``U(-2, 2)`` rad. The path is scaled so that its longer side spans
    ``U(0.4, 1.0) * (K - 3)`` pixels, centred so that its mean (the kernel's
    centre of mass) falls on the central pixel, and splatted bilinearly onto the
    grid: the time spent at a position becomes the kernel weight.

    Args:
        seed: see the module docstring.
        size: kernel side K (odd); default: uniform over 15, 17, ..., 31.
        steps: number of path samples.
    """
    rng = make_rng(seed)
    k = int(size) if size is not None else int(rng.choice(np.arange(15, 32, 2)))
    if k < 3 or k % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {k}")
    wobble = rng.uniform(0.02, 0.25)
    turns = rng.normal(0.0, wobble, steps)
    if rng.random() < 0.3:
        turns[rng.integers(steps // 4, 3 * steps // 4)] += rng.uniform(-2.0, 2.0)
    heading = rng.uniform(0.0, 2.0 * np.pi) + np.cumsum(turns)
    path = np.cumsum(np.stack([np.sin(heading), np.cos(heading)], axis=1), axis=0)  # (y, x)
    path -= path.min(axis=0)
    extent = max(float(path.max()), 1e-6)
    path *= rng.uniform(0.4, 1.0) * (k - 3) / extent
    path += (k - 1) / 2.0 - path.mean(axis=0)
    kernel = _splat(path, k)
    return (kernel / kernel.sum()).astype(np.float32)


def _convolve_same(plane: np.ndarray, kernel: np.ndarray, boundary: str) -> np.ndarray:
    """True 2-D convolution, output the size of ``plane``; boundary is an np.pad mode."""
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(plane, ((ph, ph), (pw, pw)), mode=boundary)
    return signal.fftconvolve(padded, kernel, mode="valid")


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel of ``img`` with ``kernel`` (odd-sized, mirror boundaries)."""
    x = _as_float(img).astype(np.float64)
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be 2-D with odd sides, got shape {kernel.shape}")
    if x.ndim == 2:
        return _convolve_same(x, kernel, "symmetric").astype(np.float32)
    planes = [_convolve_same(x[..., c], kernel, "symmetric") for c in range(x.shape[-1])]
    return np.stack(planes, axis=-1).astype(np.float32)


def motion_blur(
    img: np.ndarray,
    seed: SeedLike = 0,
    noise_sigma_255: float = 2.55,
    size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blur with a random :func:`motion_kernel`, add AWGN (default 1 %), clip to [0, 1].

    Returns:
        ``(blurred, kernel)``: float32 image of the input's shape, float32 (K, K) kernel.
    """
    rng = make_rng(seed)
    kernel = motion_kernel(rng, size)
    blurred = gaussian(blur(img, kernel), noise_sigma_255, rng)
    return np.clip(blurred, 0.0, 1.0), kernel


# ----------------------------------------------------------------------------- rain
def _streak_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Anti-aliased straight line of ``length`` px at ``angle_deg`` from vertical, sum 1."""
    side = int(np.ceil(length)) | 1
    centre = (side - 1) / 2.0
    t = np.linspace(-0.5, 0.5, max(4 * side, 8))[:, None] * (length - 1)
    direction = np.array([[np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))]])  # (y, x)
    kernel = _splat(centre + t * direction, side)
    return kernel / kernel.sum()


def rain_layer(shape: Sequence[int], seed: SeedLike = 0, mode: str | None = None) -> np.ndarray:
    """A rain-streak layer, float32 ``(H, W)`` with values in ``[0, alpha]``.

    Sparse random impulses (density ``rho``, brightness U(0.5, 1)) are widened by
    a Gaussian (sigma U(0.3, 0.8) px) and smeared along a line of random length
    at an angle U(-30, 30) degrees from vertical. Each layer is scaled so that its
    99.9th percentile is 1; layers are summed, clipped to 1 and multiplied by
    ``alpha``. ``mode``: ``"light"`` (one layer), ``"heavy"`` (three layers whose
    directions differ by up to 5 degrees) or ``None`` (either, 50/50). See
    :data:`RAIN_PRESETS` for the ranges.
    """
    height, width = int(shape[0]), int(shape[1])
    rng = make_rng(seed)
    if mode is None:
        mode = "heavy" if rng.random() < 0.5 else "light"
    if mode not in RAIN_PRESETS:
        raise ValueError(f"rain mode must be 'light', 'heavy' or None, got {mode!r}")
    preset = RAIN_PRESETS[mode]
    angle = rng.uniform(-30.0, 30.0)
    alpha = rng.uniform(*preset["alpha"])
    total = np.zeros((height, width), np.float64)
    for _ in range(preset["layers"]):
        rho = rng.uniform(*preset["rho"])
        length = rng.uniform(*preset["length"])
        layer_angle = angle if preset["layers"] == 1 else angle + rng.uniform(-5.0, 5.0)
        drops = (rng.random((height, width)) < rho) * rng.uniform(0.5, 1.0, (height, width))
        drops = ndimage.gaussian_filter(drops, sigma=rng.uniform(0.3, 0.8), mode="wrap")
        streaks = _convolve_same(drops, _streak_kernel(length, layer_angle), "wrap")
        scale = np.percentile(streaks, 99.9)
        total += streaks / max(scale, 1e-8)
    return (alpha * np.clip(total, 0.0, 1.0)).astype(np.float32)


def rain(img: np.ndarray, seed: SeedLike = 0, mode: str | None = None) -> np.ndarray:
    """Add rain streaks (the same layer on every channel) and clip to [0, 1]."""
    x = _as_float(img)
    layer = rain_layer(x.shape, seed, mode)
    if x.ndim == 3:
        layer = layer[..., None]
    return np.clip(x + layer, 0.0, 1.0).astype(np.float32)
