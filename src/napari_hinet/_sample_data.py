"""napari sample data: degraded images, each with its clean twin.

``File > Open Sample > HINet`` lists four samples. Each one adds two image
layers: the clean image (hidden under the degraded one) and the degraded image
(selected, so the Denoise/Deblur/Derain widget picks it at once). The clean
images ship with the package (``samples/``, licences in ``samples/LICENSES.md``);
the degradations are made at load time with :mod:`napari_hinet.data.degrade`
and fixed seeds, so every user gets exactly the same sample.

The functions return lists of napari layer-data tuples ``(data, kwargs,
"image")`` and can be used without napari, e.g. in tests or notebooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

#: Seeds of the sample degradations (changing one changes the sample).
SEED = 2021

#: Fluorescence sample: camera units = offset + gain * intensity.
_FLUO_OFFSET = 100.0
_FLUO_GAIN = 1000.0


def _read_png(name: str) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(SAMPLES_DIR / name))


def _to_uint8(img01: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (may overshoot) -> uint8, rounded and clipped like a camera would."""
    return np.clip(np.rint(img01 * 255.0), 0, 255).astype(np.uint8)


def _pair(
    clean: np.ndarray, degraded: np.ndarray, what: str, kind: str, **kwargs: Any
) -> list[LayerDataTuple]:
    """The two layers of a sample: the clean twin (hidden) and the degraded image on top."""
    clean_kwargs = {"name": f"{what} (clean)", "visible": False, **kwargs}
    degraded_kwargs = {"name": f"{what} ({kind})", **kwargs}
    return [(clean, clean_kwargs, "image"), (degraded, degraded_kwargs, "image")]


def noisy_fluorescence() -> list[LayerDataTuple]:
    """Fluorescence nuclei (512 x 512, uint16) with Poisson-Gaussian camera noise, and the clean twin.

    The clean image (BBBC038 sample, values 0-235) is scaled to [0, 0.92],
    degraded by :func:`~napari_hinet.data.degrade.poisson_gaussian` with 20
    photo-electrons at intensity 1.0 and a read noise of 1.5 electrons, and both
    are stored as a camera would: ``uint16 = 100 + 1000 * intensity``.
    """
    import tifffile

    from napari_hinet.data import degrade

    raw = tifffile.imread(SAMPLES_DIR / "nuclei_bbbc038.tif").astype(np.float32)
    clean01 = raw / 255.0
    noisy01 = degrade.poisson_gaussian(clean01, photons=20.0, read_sigma=1.5, seed=SEED)

    def camera(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(_FLUO_OFFSET + _FLUO_GAIN * x), 0, 65535).astype(np.uint16)

    limits = [_FLUO_OFFSET, _FLUO_OFFSET + 0.8 * _FLUO_GAIN]
    return _pair(camera(clean01), camera(noisy01), "nuclei", "noisy", colormap="gray", contrast_limits=limits)


def noisy_photo() -> list[LayerDataTuple]:
    """A photo (cat, 300 x 451 RGB uint8) with Gaussian noise of sigma 25/255, and the clean twin."""
    from napari_hinet.data import degrade

    clean = _read_png("chelsea.png")
    noisy = degrade.gaussian(clean.astype(np.float32) / 255.0, sigma_255=25.0, seed=SEED)
    return _pair(clean, _to_uint8(noisy), "cat", "noisy", rgb=True)


def blurred_photo() -> list[LayerDataTuple]:
    """A photo (coffee cup, 384 x 512 RGB uint8) with camera-shake blur (19 x 19 kernel), and the sharp twin."""
    from napari_hinet.data import degrade

    clean = _read_png("coffee.png")
    blurred, _kernel = degrade.motion_blur(clean.astype(np.float32) / 255.0, seed=SEED, size=19)
    return _pair(clean, _to_uint8(blurred), "coffee", "blurred", rgb=True)


def rainy_photo() -> list[LayerDataTuple]:
    """A photo (astronaut, 384 x 384 RGB uint8) with light synthetic rain streaks, and the clean twin."""
    from napari_hinet.data import degrade

    clean = _read_png("astronaut.png")
    rainy = degrade.rain(clean.astype(np.float32) / 255.0, seed=SEED, mode="light")
    return _pair(clean, _to_uint8(rainy), "astronaut", "rainy", rgb=True)


#: key -> (function, task it demonstrates); used by the docs and the screenshots script.
SAMPLES = {
    "noisy_fluorescence": (noisy_fluorescence, "denoise"),
    "noisy_photo": (noisy_photo, "denoise"),
    "blurred_photo": (blurred_photo, "deblur"),
    "rainy_photo": (rainy_photo, "derain"),
}
