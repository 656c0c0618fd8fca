"""Patch sources for the four data modes of :func:`napari_hinet.training.finetune`.

Images are held as lists of channel-last arrays ``(H, W, C)``: float32 in [0, 1]
or uint8 (divided by 255 when a patch is cut). A *source* draws one training
sample ``(input, target)``, both float32 ``(C, P, P)``, from a numpy Generator;
batches are made with :func:`make_batch` from a Generator seeded by
``[seed, step]``, so the data of a step never depends on what came before it
(this makes resuming after an interruption exact).

Modes:

* ``synthetic`` -- :class:`SyntheticSource`: clean images, degraded on the fly
  by a :class:`Degradation`;
* ``paired`` -- :class:`PairedSource`: degraded and clean images;
* ``n2n`` -- :class:`PairedSource` with ``swap=True``: two noisy acquisitions of
  the same scene, each used as the target of the other (Noise2Noise);
* ``self_supervised`` -- :class:`NeighborSource`: noisy images only; the two
  images of a pair are neighbouring-pixel sub-samples of one noisy patch
  (Neighbor2Neighbor, Huang et al., CVPR 2021); :class:`NoisyPatchSource`:
  noisy patches for the objectives of :mod:`napari_hinet.training.selfsupervised`;
  :class:`NoiseMapSource`: noisy patches and their noise variance (SURE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from napari_hinet.data import degrade
from napari_hinet.engine.ensemble import orient

__all__ = [
    "Degradation",
    "MixtureSource",
    "NeighborSource",
    "NoisyPatchSource",
    "PairedSource",
    "NoiseMapSource",
    "SyntheticSource",
    "LUMA_WEIGHTS",
    "dihedral",
    "luminance",
    "make_batch",
    "step_batch",
    "neighbor_pair",
]

Image = np.ndarray  # (H, W, C), float32 in [0, 1] or uint8


def _to_float(patch: np.ndarray) -> np.ndarray:
    if patch.dtype == np.uint8:
        return patch.astype(np.float32) / np.float32(255.0)
    return patch.astype(np.float32, copy=False)


#: Rec. 601 luma weights of R, G, B (the gray value of an RGB photo).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance of a float ``(H, W, 3)`` image in [0, 1]: float32 ``(H, W, 1)`` (Rec. 601 weights)."""
    return (rgb.astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32))[..., None]


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/flips of an ``(H, W, ...)`` array; ``k`` in 0..7 (0 = identity).

    The engine's self-ensemble orientation ``k`` (:func:`napari_hinet.engine.ensemble.orient`)
    in the (H, W) plane: a view.
    """
    return orient(img, k, axes=(0, 1))


def _crop(img: Image, top: int, left: int, size: int) -> np.ndarray:
    return img[top : top + size, left : left + size]


def _random_crop(img: Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size x size`` crop; images smaller than ``size`` are reflect-padded first."""
    h, w = img.shape[:2]
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        h, w = img.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return _crop(img, top, left, size)


def _pick(areas: np.ndarray, rng: np.random.Generator) -> int:
    """Index of an image drawn with probability proportional to its area."""
    return int(rng.choice(len(areas), p=areas / areas.sum()))


def _areas(images: list[Image]) -> np.ndarray:
    return np.array([im.shape[0] * im.shape[1] for im in images], np.float64)


@dataclass
class Degradation:
    """A random degradation for synthetic training (parameters drawn per patch).

    Attributes:
        kind: ``"gaussian"``, ``"poisson_gaussian"``, ``"motion_blur"`` or ``"rain"``.
        sigma_255: gaussian: range of the noise std on the 0..255 scale (uniform).
        photons: poisson_gaussian: range of photo-electrons per unit intensity
            (log-uniform).
        read_fraction: poisson_gaussian: range of the read-noise std as a fraction
            of the intensity range (uniform); ``read_sigma = fraction * photons``.
        gain: poisson_gaussian: range of a random scale applied to the clean patch
            first (the target is scaled too), so the model sees dim and bright data.
        blur_noise_255: motion_blur: range of the added noise std (0..255 scale).
        rain_modes: rain: modes drawn uniformly (``"light"``, ``"heavy"``).
        file_share: gaussian: probability that a degraded patch is stored as an 8-bit
            file would store it (clipped to [0, 1], rounded to steps of 1/255). Such
            files are what users open; unclipped noise alone leaves a model weak on
            them (a gray 8-bit photo with 12 % clipped pixels gained 4.1 dB against
            9.2 dB unclipped, docs/models.md).
    """

    kind: str = "gaussian"
    sigma_255: tuple[float, float] = (0.0, 50.0)
    photons: tuple[float, float] = (5.0, 500.0)
    read_fraction: tuple[float, float] = (0.0, 0.05)
    gain: tuple[float, float] = (1.0, 1.0)
    blur_noise_255: tuple[float, float] = (0.0, 2.55)
    rain_modes: tuple[str, ...] = ("light", "heavy")
    file_share: float = 0.0

    KINDS = ("gaussian", "poisson_gaussian", "motion_blur", "rain")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown degradation {self.kind!r}; choose one of {', '.join(self.KINDS)}")
        for name in ("sigma_255", "photons", "read_fraction", "gain", "blur_noise_255"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"degradation {name} range must be (low, high), got {(lo, hi)}")
            setattr(self, name, (float(lo), float(hi)))
        self.rain_modes = tuple(self.rain_modes)

    @property
    def margin(self) -> int:
        """Extra context (pixels per side) to cut around a patch before degrading it."""
        return 16 if self.kind == "motion_blur" else 0

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Degrade a clean float32 ``(H, W, C)`` patch; returns ``(degraded, target)``."""
        if self.kind == "gaussian":
            noisy = degrade.gaussian(clean, rng.uniform(*self.sigma_255), rng)
            if self.file_share > 0 and rng.random() < self.file_share:
                noisy = (np.round(np.clip(noisy, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
            return noisy, clean
        if self.kind == "poisson_gaussian":
            target = clean * np.float32(rng.uniform(*self.gain))
            lo, hi = np.log(self.photons[0]), np.log(self.photons[1])
            photons = float(np.exp(rng.uniform(lo, hi)))
            read_sigma = rng.uniform(*self.read_fraction) * photons
            return degrade.poisson_gaussian(target, photons, read_sigma, rng), target
        if self.kind == "motion_blur":
            noisy, _ = degrade.motion_blur(clean, rng, noise_sigma_255=rng.uniform(*self.blur_noise_255))
            return noisy, clean
        mode = self.rain_modes[int(rng.integers(len(self.rain_modes)))]
        return degrade.rain(clean, rng, mode), clean

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "sigma_255": list(self.sigma_255),
            "photons": list(self.photons),
            "read_fraction": list(self.read_fraction),
            "gain": list(self.gain),
            "blur_noise_255": list(self.blur_noise_255),
            "rain_modes": list(self.rain_modes),
            "file_share": self.file_share,
        }


def texture(img: np.ndarray) -> float:
    """Mean absolute vertical plus horizontal neighbour difference of an (H, W, C) float image."""
    return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())


@dataclass
class SyntheticSource:
    """Clean images degraded on the fly. Augmentation happens on the clean patch,
    before degrading, so rain streaks stay near-vertical.

    ``min_texture`` > 0 rejects flat crops (up to 8 tries): those whose mean
    absolute difference between neighbouring pixels (vertical + horizontal, in
    intensity units) is below it. Photographs with large out-of-focus areas
    otherwise give many patches that teach a deblurring model nothing; 0.02
    keeps about two thirds of the crops of the training pool.

    ``texture_share`` (default 1) is the probability that a sample goes through
    that filter at all; the others are plain random crops. Filtering every
    sample gains on textured images and loses on smooth ones (measured for the
    photo denoiser, ``docs/models.md``); a share keeps some of both.

    ``gray_share`` (RGB images only) is the probability that a sample is a gray
    photo as the engine feeds it to an RGB model: the clean patch becomes its
    luminance, is degraded once, and input and target are copied into R, G and
    B, so the noise is identical in the three channels. Without such samples an
    RGB denoiser learns that channel-identical noise is structure and returns
    gray photos unchanged.
    """

    images: list[Image]
    degradation: Degradation
    augment: bool = True
    min_texture: float = 0.0
    gray_share: float = 0.0
    texture_share: float = 1.0
    _areas: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.texture_share <= 1.0:
            raise ValueError(f"texture_share must lie in [0, 1], got {self.texture_share}")
        self._areas = _areas(self.images)

    @property
    def channels(self) -> int:
        return self.images[0].shape[2]

    def sample(self, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
        margin = self.degradation.margin
        # no random draw when every sample is filtered: configs without a share replay their patches
        filtered = self.min_texture > 0 and (self.texture_share >= 1 or rng.random() < self.texture_share)
        for _ in range(8):
            img = self.images[_pick(self._areas, rng)]
            clean = _to_float(_random_crop(img, patch + 2 * margin, rng))
            if not filtered or texture(clean) >= self.min_texture:
                break
        if self.augment:
            clean = dihedral(clean, int(rng.integers(8)))
        clean = np.ascontiguousarray(clean)
        gray = self.gray_share > 0 and clean.shape[2] == 3 and rng.random() < self.gray_share
        if gray:
            clean = np.ascontiguousarray(luminance(clean))
        degraded, target = self.degradation.apply(clean, rng)
        if gray:
            degraded, target = np.repeat(degraded, 3, axis=2), np.repeat(target, 3, axis=2)
        if margin:
            degraded = degraded[margin:-margin, margin:-margin]
            target = target[margin:-margin, margin:-margin]
        return degraded, target


@dataclass
class PairedSource:
    """Aligned (input, target) image pairs; with ``swap=True`` (Noise2Noise) the two
    roles are exchanged at random for every patch."""

    inputs: list[Image]
    targets: list[Image]
    augment: bool = True
    swap: bool = False
    _areas: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._areas = _areas(self.inputs)

    @property
    def channels(self) -> int:
        return self.inputs[0].shape[2]

    def sample(self, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
        i = _pick(self._areas, rng)
        both = np.concatenate([self.inputs[i], self.targets[i]], axis=2)
        crop = _to_float(_random_crop(both, patch, rng))
        if self.augment:
            crop = dihedral(crop, int(rng.integers(8)))
        c = self.inputs[i].shape[2]
        a, b = crop[..., :c], crop[..., c:]
        if self.swap and rng.random() < 0.5:
            a, b = b, a
        return a, b


def neighbor_pair(noisy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Neighbor2Neighbor sub-sampling of an ``(2P, 2P, C)`` patch into two ``(P, P, C)`` images.

    In every 2x2 cell two *different*, adjacent pixels are picked at random; the
    first goes to image 1, the second to image 2. With pixel-independent noise the
    two images are noisy views of almost the same signal.
    """
    h, w, c = noisy.shape
    cells = noisy.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 1, 3, 4).reshape(h // 2, w // 2, 4, c)
    # Adjacent pairs within a cell (positions 0 1 / 2 3): horizontal or vertical neighbours.
    pairs = np.array([(0, 1), (1, 0), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1)])
    choice = pairs[rng.integers(len(pairs), size=(h // 2, w // 2))]
    rows, cols = np.indices((h // 2, w // 2))
    first = cells[rows, cols, choice[..., 0]]
    second = cells[rows, cols, choice[..., 1]]
    return first, second


@dataclass
class NoisyPatchSource:
    """Noisy images only: each sample is one noisy patch of ``scale * patch`` pixels,
    returned as both input and target (the objectives of
    :mod:`napari_hinet.training.selfsupervised` make the pairs)."""

    images: list[Image]
    augment: bool = True
    scale: int = 1
    _areas: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._areas = _areas(self.images)

    @property
    def channels(self) -> int:
        return self.images[0].shape[2]

    def crop(self, rng: np.random.Generator, patch: int) -> np.ndarray:
        """A random (augmented) ``scale * patch`` crop of an image drawn by area."""
        img = self.images[_pick(self._areas, rng)]
        crop = _to_float(_random_crop(img, self.scale * patch, rng))
        if self.augment:
            crop = dihedral(crop, int(rng.integers(8)))
        return np.ascontiguousarray(crop)

    def sample(self, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
        crop = self.crop(rng, patch)
        return crop, crop


@dataclass
class NeighborSource(NoisyPatchSource):
    """Noisy images only: each sample is a Neighbor2Neighbor pair of one noisy patch."""

    scale: int = 2

    def sample(self, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
        return neighbor_pair(self.crop(rng, patch), rng)


@dataclass
class NoiseMapSource(NoisyPatchSource):
    """Noisy images only, each with a map of its noise variance: a sample is a
    noisy patch ``y`` and the variance at each of its pixels, both ``(P, P, C)``
    and cut at the same place (for
    :func:`~napari_hinet.training.selfsupervised.sure_objective`).

    ``variances``: float32 ``(H, W, C)`` per image, in the images' [0, 1] units
    (:func:`~napari_hinet.training.noise_model.variance_map`).
    """

    variances: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.variances) != len(self.images) or any(
            v.shape != im.shape for v, im in zip(self.variances, self.images, strict=True)
        ):
            raise ValueError("NoiseMapSource needs one variance map of the image's shape per image")

    def sample(self, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
        i = _pick(self._areas, rng)
        c = self.images[i].shape[2]
        both = np.concatenate([_to_float(self.images[i]), self.variances[i]], axis=2)
        crop = _random_crop(both, patch, rng)
        if self.augment:
            crop = dihedral(crop, int(rng.integers(8)))
        return np.ascontiguousarray(crop[..., :c]), np.ascontiguousarray(crop[..., c:])


def make_batch(
    source, rng: np.random.Generator, batch_size: int, patch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``batch_size`` samples into float32 arrays ``(N, C, P, P)`` (inputs, targets)."""
    pairs = [source.sample(rng, patch) for _ in range(batch_size)]
    inputs = np.stack([np.ascontiguousarray(a.transpose(2, 0, 1)) for a, _ in pairs])
    targets = np.stack([np.ascontiguousarray(b.transpose(2, 0, 1)) for _, b in pairs])
    return inputs.astype(np.float32, copy=False), targets.astype(np.float32, copy=False)


def step_batch(source, seed: int, step: int, batch_size: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch of training step ``step``: :func:`make_batch` with ``default_rng([seed, step])``,
    so any process can draw it, in any order (the trainer's reproducibility rule)."""
    return make_batch(source, np.random.default_rng([seed, step]), batch_size, patch)


def fixed_set(source, seed: int, count: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic set of ``count`` samples (for validation), drawn without augmentation."""
    augment = source.augment
    source.augment = False
    try:
        return make_batch(source, np.random.default_rng([seed, 7_777_777]), count, patch)
    finally:
        source.augment = augment


def round_down(value: int, multiple: int) -> int:
    """The largest multiple of ``multiple`` that is <= ``value`` (at least ``multiple``)."""
    return max(multiple, (value // multiple) * multiple)


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass
class MixtureSource:
    """Draws each sample from one of several sources with the given probabilities."""

    sources: list
    weights: list[float]

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.weights) or not self.sources:
            raise ValueError("MixtureSource needs one weight per source")
        channels = {s.channels for s in self.sources}
        if len(channels) != 1:
            raise ValueError(f"all sources of a mixture must have the same channels, got {sorted(channels)}")
        w = np.asarray(self.weights, np.float64)
        self._p = w / w.sum()

    @property
    def channels(self) -> int:
        return self.sources[0].channels

    @property
    def augment(self) -> bool:
        return self.sources[0].augment

    @augment.setter
    def augment(self, value: bool) -> None:
        for s in self.sources:
            s.augment = value

    def sample(self, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.sources[int(rng.choice(len(self.sources), p=self._p))].sample(rng, patch)
