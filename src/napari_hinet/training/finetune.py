"""``finetune()``: train a HINet model on the user's own data, in four data modes.

Data modes (``mode=``):

``"synthetic"``
    ``clean=`` images only; degraded on the fly by ``degradation=`` (a
    :class:`~napari_hinet.training.datasets.Degradation`, a dict of its fields or
    just its kind, e.g. ``"poisson_gaussian"``).
``"paired"``
    ``inputs=`` degraded and ``targets=`` clean images, aligned pixel for pixel.
``"n2n"``
    Noise2Noise: ``inputs=`` and ``targets=`` are two independent noisy
    acquisitions of the same scene; each serves as the target of the other.
``"self_supervised"``
    ``inputs=`` noisy images only (``config.ssl_method``: Neighbor2Neighbor
    sub-sampled pairs with or without its regulariser, or blind-spot masking; see
    :mod:`~napari_hinet.training.selfsupervised`; for pixel-wise independent,
    zero-mean noise such as camera shot/read noise).

Validation PSNR is measured against a clean reference only when one is given
(paired and synthetic modes, or ``val_targets=``); in ``n2n`` and
``self_supervised`` mode without it, the reference is a *noisy view* (the second
acquisition, or the other neighbour sub-sample), so the value is far below the
true PSNR and only its rise means something. :attr:`FinetuneJob.val_reference`,
:attr:`FinetuneResult.val_reference`, the saved metadata and the CLI say which.

``config.time_budget_s`` fits the number of steps to a wall-clock budget (see
:class:`~napari_hinet.training.budget.BudgetPlanner`), so the warm-up and cosine
decay end when the time is up.

Images are numpy arrays (e.g. napari layer data), lists of arrays, a file path
or a folder path (pairs in two folders are matched by file name). Arrays are
``(H, W)`` gray, ``(H, W, 3|4)`` RGB(A), ``(N, H, W)`` a stack of gray planes or
``(N, H, W, 3|4)`` a stack of RGB images; ``rgb=False`` reads an ``(N, H, W)``
array with N = 3 or 4 as planes.

For a GUI, :class:`FinetuneJob` separates *preparing* (all checks, errors raised
before any training) from *running* (a generator of
:class:`~napari_hinet.training.engine.StepEvent`) and *saving*; calling
:meth:`FinetuneJob.run` again after a stop continues where it stopped.
"""

from __future__ import annotations

import copy
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.intensity import DEFAULT_PERCENTILES, Mapping, fixed_mapping, percentile_mapping
from ..io import ARRAY_SUFFIXES, read_array
from . import selfsupervised
from .budget import BudgetPlanner
from .datasets import (
    Degradation,
    NeighborSource,
    NoiseMapSource,
    NoisyPatchSource,
    PairedSource,
    SyntheticSource,
    fixed_set,
    luminance,
)
from .engine import History, TrainConfig, Trainer

__all__ = [
    "FinetuneConfig",
    "FinetuneJob",
    "FinetuneResult",
    "finetune",
    "load_images",
]

MODES = ("synthetic", "paired", "n2n", "self_supervised")
#: Validation reference labels (``val_reference``).
CLEAN_REFERENCE = "clean"
NOISY_VIEW_N2N = "noisy view (second acquisition)"
NOISY_VIEW_SUBSAMPLE = "noisy view (neighbour sub-sample)"
SURE_ESTIMATE = "clean, estimated (SURE)"
#: Suffixes of image files in a training folder (the reader table of :func:`napari_hinet.io.read_array`).
IMAGE_EXTENSIONS = ARRAY_SUFFIXES

ImageData = np.ndarray | Sequence[np.ndarray] | str | os.PathLike


@dataclass
class FinetuneConfig(TrainConfig):
    """Settings of :func:`finetune` (all of :class:`TrainConfig`, plus these).

    Attributes:
        model: constructor arguments of a *new* HINet when ``base_model`` is None
            (``in_chn`` defaults to the data's channels).
        normalization: ``"fixed"`` (dtype range: uint8 / 255, uint16 / 65535;
            floats are taken as already in [0, 1]), ``"percentile"`` (each image's
            1st..99.8th percentile to 0..1, as for microscopy) or ``None``: the base
            model's setting, else percentile for gray and fixed for RGB data.
        channel_rule: how to feed data whose channels differ from the model's:
            ``"replicate"`` (gray data copied into R, G, B for a 3-channel model) or
            ``"gray"`` (RGB data converted to luminance for a 1-channel model).
        val_fraction: share held out for validation when no validation data is
            given: whole images if there are several, else a strip at the bottom.
        val_count: number of fixed validation patches.
        val_patch: validation patch side (default: 2 x patch_size, limited by the
            validation images).
        run_dir: folder for checkpoints and ``train.log`` (None: no files; a
            crash cannot be resumed).
        resume: continue from ``run_dir/last.pt`` when it exists.
        name: name of the saved model (default: ``<base>-<mode>-<date>``).
        task: task of a new model (``"denoise"``, ``"deblur"``, ``"derain"``).
        time_budget_s: wall-clock seconds for :meth:`FinetuneJob.run` (validations
            included; data loading and saving not). When set, ``steps`` is ignored:
            the first steps of the warm-up are timed and the total is fitted so the
            warm-up + cosine schedule ends at the budget (:class:`~.budget.BudgetPlanner`),
            kept in ``run_dir/budget.json`` for resuming (a slower machine later means
            a longer run, not a truncated schedule). Only once, past half the budget,
            is the total fitted again to the pace measured since (:func:`~.budget.refit_schedule`: the cosine continues from the
            current rate), when that changes it by more than 5 %.
        ssl_method: self-supervised method (mode ``"self_supervised"``):
            ``"neighbor"`` (Neighbor2Neighbor), ``"neighbor_reg"`` (with its
            regulariser), ``"blind_spot"`` (Noise2Void-style masking) or
            ``"sure"`` (Stein's unbiased risk estimate, which needs the noise level:
            ``noise_model``); see :mod:`napari_hinet.training.selfsupervised`.
        noise_model: for ``ssl_method="sure"``: ``(a, b)`` such that a pixel of
            clean value ``x`` has noise variance ``a * x + b``, in the units of the
            data as given (before normalisation; e.g. for a camera in ADU with gain
            ``g`` ADU per electron, offset ``o`` and read noise ``r`` ADU:
            ``(g, r**2 - g * o)``; for ``degrade.poisson_gaussian(img, photons,
            read)``: ``(1 / photons, (read / photons)**2)``). ``None``: estimated
            from each image (:func:`~napari_hinet.training.noise_model.estimate_noise_model`),
            which counts all pixel-independent noise in the data.
    """

    steps: int = 500
    lr: float = 1e-4  # measured: docs/finetuning.md 'Recipe and measured choices'
    warmup_steps: int = 20
    val_every: int = 50
    checkpoint_every: int = 50
    model: dict = field(default_factory=lambda: {"wf": 16, "depth": 4})
    normalization: str | None = None
    channel_rule: str | None = None
    val_fraction: float = 0.2
    val_count: int = 16
    val_patch: int | None = None
    run_dir: str | None = None
    resume: bool = True
    name: str | None = None
    task: str | None = None
    time_budget_s: float | None = None
    ssl_method: str = "neighbor"
    noise_model: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 seconds (or None), got {self.time_budget_s}")
        if self.time_budget_s is not None and self.restarts:
            raise ValueError(
                "time_budget_s fits one warm-up + cosine cycle; it cannot be combined with restarts"
            )
        if self.ssl_method not in selfsupervised.METHODS:
            raise ValueError(
                f"ssl_method must be one of {', '.join(selfsupervised.METHODS)}, got {self.ssl_method!r}"
            )
        if self.noise_model is not None:
            if len(self.noise_model) != 2 or not all(math.isfinite(float(v)) for v in self.noise_model):
                raise ValueError(f"noise_model must be two finite numbers (a, b), got {self.noise_model!r}")
            if float(self.noise_model[0]) < 0:
                raise ValueError(
                    f"noise_model a (variance per unit of signal) must be >= 0, got {self.noise_model[0]}"
                )
            self.noise_model = (float(self.noise_model[0]), float(self.noise_model[1]))
        if self.normalization not in (None, "fixed", "percentile"):
            raise ValueError(
                f"normalization must be 'fixed', 'percentile' or None, got {self.normalization!r}"
            )
        if self.channel_rule not in (None, "replicate", "gray"):
            raise ValueError(f"channel_rule must be 'replicate', 'gray' or None, got {self.channel_rule!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")

    def train_config(self) -> TrainConfig:
        names = TrainConfig.__dataclass_fields__
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names})


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns."""

    model: torch.nn.Module  # best-by-validation weights, on the CPU, eval mode
    path: Path | None  # the saved .safetensors file (None when save=False)
    steps: int
    val_psnr: float | None  # best validation PSNR (dB)
    val_psnr_start: float | None  # the starting model's validation PSNR (dB)
    val_reference: str  # what the validation PSNR compares with: "clean" or "noisy view (...)"
    history: History
    stopped: bool  # True when should_stop ended training early
    wall_time_s: float
    run_dir: Path | None


# ----------------------------------------------------------------------------- images
def _read_file(path: Path) -> np.ndarray:
    return read_array(path)


def _list_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(
            f"the folder {folder} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            "point to a folder with image files"
        )
    return files


def _split_array(arr: np.ndarray, rgb: bool | None, label: str) -> list[np.ndarray]:
    """One array -> list of channel-last images (H, W, C).

    Rules, in this order: only integer, float and bool pixels (bool becomes 0/1
    float32); no empty array (a 0-plane stack or a 0-pixel image); then the shapes below.
    """
    a = np.asarray(arr)
    if a.dtype.kind == "b":
        a = a.astype(np.float32)
    if a.dtype.kind not in "uif":
        raise ValueError(
            f"{label}: images must hold integer or real numbers, not {a.dtype} pixels; convert them "
            "(for complex data, e.g. take np.abs)"
        )
    if a.size == 0:
        raise ValueError(f"{label}: the array of shape {a.shape} holds no pixels (an empty image or stack)")
    if a.ndim == 2:
        return [a[..., None]]
    if a.ndim == 3:
        if a.shape[-1] in (3, 4) and rgb is not False:
            return [a[..., :3]]
        return [plane[..., None] for plane in a]
    if a.ndim == 4 and a.shape[-1] in (3, 4):
        return [im[..., :3] for im in a]
    raise ValueError(
        f"{label}: cannot read an array of shape {a.shape} as images; expected (H, W), (H, W, 3), "
        "(N, H, W) or (N, H, W, 3)"
    )


def _check_finite(
    train: list[list[np.ndarray]], val: list[list[np.ndarray]] | None, names: list[str]
) -> None:
    """Raise ``ValueError`` naming the first training or validation image with NaN or Inf pixels."""
    groups = [("training", ims) for ims in train] + [("validation", ims) for ims in (val or [])]
    for what, images in groups:
        for i, im in enumerate(images):
            if im.dtype.kind == "f" and not np.isfinite(im).all():
                bad = int(im.size - np.count_nonzero(np.isfinite(im)))
                name = names[i] if what == "training" and i < len(names) else f"#{i}"
                raise ValueError(
                    f"the {what} image {name} holds {bad} NaN or infinite pixel(s); training on them would "
                    "give a NaN loss or NaN validation. Replace them (e.g. np.nan_to_num) or leave the image out"
                )


def load_images(
    data: ImageData, *, rgb: bool | None = None, label: str = "images"
) -> tuple[list[np.ndarray], list[str]]:
    """Images (not yet normalised) and their names from arrays, a file or a folder."""
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        files = _list_folder(path) if path.is_dir() else [path]
        images, names = [], []
        for f in files:
            if not f.exists():
                raise FileNotFoundError(f"{label}: file not found: {f}")
            parts = _split_array(_read_file(f), rgb, f"{label} {f.name}")
            images += parts
            names += [f.stem if len(parts) == 1 else f"{f.stem}#{i}" for i in range(len(parts))]
        return images, names
    if isinstance(data, np.ndarray):
        parts = _split_array(data, rgb, label)
        return parts, [f"{label}[{i}]" for i in range(len(parts))]
    if isinstance(data, Sequence) and len(data) > 0:
        images, names = [], []
        for i, item in enumerate(data):
            parts = _split_array(np.asarray(item), rgb, f"{label}[{i}]")
            images += parts
            names += [f"{label}[{i}]" if len(parts) == 1 else f"{label}[{i}]#{j}" for j in range(len(parts))]
        return images, names
    raise ValueError(f"{label}: no images given (expected an array, a list of arrays, a file or a folder)")


def _pair_folders(a: ImageData, b: ImageData, rgb: bool | None, labels: tuple[str, str]):
    """Two folders -> images matched by file stem; otherwise read both in order."""
    if (
        isinstance(a, str | os.PathLike)
        and isinstance(b, str | os.PathLike)
        and Path(a).is_dir()
        and Path(b).is_dir()
    ):
        fa = {p.stem: p for p in _list_folder(Path(a))}
        fb = {p.stem: p for p in _list_folder(Path(b))}
        only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
        if only_a or only_b:
            raise ValueError(
                f"{labels[0]} and {labels[1]} folders must hold files with the same names; "
                f"only in {a}: {only_a[:5]}, only in {b}: {only_b[:5]}"
            )
        ims_a, ims_b, names = [], [], []
        for stem in sorted(fa):
            pa = _split_array(_read_file(fa[stem]), rgb, f"{labels[0]} {stem}")
            pb = _split_array(_read_file(fb[stem]), rgb, f"{labels[1]} {stem}")
            if len(pa) != len(pb):
                raise ValueError(f"{stem}: {labels[0]} has {len(pa)} planes but {labels[1]} has {len(pb)}")
            ims_a += pa
            ims_b += pb
            names += [stem if len(pa) == 1 else f"{stem}#{i}" for i in range(len(pa))]
        return ims_a, ims_b, names
    ims_a, names = load_images(a, rgb=rgb, label=labels[0])
    ims_b, _ = load_images(b, rgb=rgb, label=labels[1])
    if len(ims_a) != len(ims_b):
        raise ValueError(
            f"{labels[0]} has {len(ims_a)} images but {labels[1]} has {len(ims_b)}; they must pair up"
        )
    return ims_a, ims_b, names


def _check_pairs(a: list[np.ndarray], b: list[np.ndarray], names: list[str], labels: tuple[str, str]) -> None:
    for x, y, n in zip(a, b, names, strict=True):
        if x.shape != y.shape:
            raise ValueError(
                f"mismatched pair {n!r}: {labels[0]} has shape {x.shape[:2]} x {x.shape[2]} ch, "
                f"{labels[1]} has {y.shape[:2]} x {y.shape[2]} ch; pairs must have identical shapes"
            )


def _percentile_range(img: np.ndarray) -> tuple[float, float]:
    mapping = percentile_mapping(img, DEFAULT_PERCENTILES)
    return mapping.low, mapping.high


def _normalize(img: np.ndarray, how: str, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale ``img`` to the network's [0, 1] units.

    With ``how="percentile"``, ``value_range`` (lo, hi) is the range mapped to 0..1; by
    default the image's own 1st..99.8th percentiles. The images of one training
    pair must share one range (the input's), as at inference, where the output
    is mapped back with the input's range.
    """
    if how == "percentile":  # the inference mapping (engine.intensity), so the same zero-range rule
        return Mapping(*(_percentile_range(img) if value_range is None else value_range)).forward(img)
    if img.dtype == np.uint8:
        return img  # kept as uint8; patches are divided by 255 when cut (saves memory)
    if np.issubdtype(img.dtype, np.integer):  # the dtype range, as inference's "fixed"
        return fixed_mapping(img.dtype).forward(img)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    out = img.astype(np.float32)
    peak = float(np.nanmax(np.abs(out))) if out.size else 0.0
    if peak > 2.0:
        raise ValueError(
            f"float images with normalization='fixed' must hold intensities in [0, 1], but this one reaches {peak:g}; "
            "use normalization='percentile' or scale the data to [0, 1]"
        )
    return out


def _apply_channel_rule(img: np.ndarray, want: int, rule: str | None, what: str) -> np.ndarray:
    have = img.shape[2]
    if have == want:
        return img
    if want == 3 and have == 1 and rule == "replicate":
        return np.repeat(img, 3, axis=2)
    if want == 1 and have == 3 and rule == "gray":
        gray = luminance(img)
        return gray / np.float32(255.0) if img.dtype == np.uint8 else gray
    hint = {
        (3, 1): "pass channel_rule='replicate' to copy the gray data into R, G and B",
        (1, 3): "pass channel_rule='gray' to convert the RGB data to luminance",
    }.get((want, have), "use data with the model's channels")
    raise ValueError(
        f"the model expects {want}-channel images but {what} has {have} channel(s); {hint}, or start from a {have}-channel model"
    )


# ----------------------------------------------------------------------------- model
def _resolve_model(base_model: Any, cfg: FinetuneConfig, data_channels: int) -> tuple[torch.nn.Module, str]:
    from napari_hinet.model import HINet

    if base_model is None:
        args = {"in_chn": data_channels, **cfg.model}
        torch.manual_seed(cfg.seed)
        return HINet(**args), f"new HINet({', '.join(f'{k}={v}' for k, v in args.items())})"
    if isinstance(base_model, torch.nn.Module):
        model = copy.deepcopy(base_model).float().cpu()
        name = getattr(base_model, "metadata", {}).get("name", "HINet instance")
        return model, name
    from napari_hinet.checkpoints import load_model

    model = load_model(base_model).float().cpu()
    return model, str(getattr(model, "metadata", {}).get("name", base_model))


# ----------------------------------------------------------------------------- the job
def _hold_out(images: list[list[np.ndarray]], fraction: float, min_rows: int):
    """Split parallel image lists into (train, val): whole images, or a bottom strip of a single one."""
    n = len(images[0])
    if n >= 2:
        k = max(1, int(round(n * fraction)))
        return [ims[: n - k] for ims in images], [ims[n - k :] for ims in images]
    h = images[0][0].shape[0]
    rows = max(min_rows, int(round(h * fraction)))
    if h - rows < min_rows:
        raise ValueError(
            f"the single training image ({h} rows) is too small to split off {rows} rows for validation; "
            "give validation data, more images, or a smaller patch_size"
        )
    return [[ims[0][: h - rows]] for ims in images], [[ims[0][h - rows :]] for ims in images]


class FinetuneJob:
    """A prepared fine-tuning run: checks everything in ``__init__``, trains in :meth:`run`.

    Takes the same arguments as :func:`finetune` (except the callbacks).
    """

    def __init__(
        self,
        base_model: Any = None,
        *,
        mode: str = "synthetic",
        clean: ImageData | None = None,
        inputs: ImageData | None = None,
        targets: ImageData | None = None,
        degradation: Degradation | dict | str | None = None,
        val_inputs: ImageData | None = None,
        val_targets: ImageData | None = None,
        val_clean: ImageData | None = None,
        rgb: bool | None = None,
        config: FinetuneConfig | None = None,
    ) -> None:
        cfg = copy.deepcopy(config) if config is not None else FinetuneConfig()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode, self.cfg = mode, cfg
        self.degradation = self._degradation(degradation)
        self.data_summary: dict[str, Any] = {"mode": mode}

        # --- read the data (before the model: errors about data come first) ------
        train, val, names = self._read_data(clean, inputs, targets, val_inputs, val_targets, val_clean, rgb)
        _check_finite(train, val, names)
        data_channels = train[0][0].shape[2]
        self.model, self.base_name = _resolve_model(base_model, cfg, data_channels)
        want = int(self.model.config["in_chn"])
        base_meta = dict(getattr(self.model, "metadata", {}) or {})
        self.normalization = (
            cfg.normalization
            or base_meta.get("normalization")
            or ("percentile" if data_channels == 1 else "fixed")
        )
        self.task = (
            cfg.task
            or base_meta.get("task")
            or ("denoise" if mode != "synthetic" else self._task_of_degradation())
        )

        # --- normalise, convert channels, check sizes --------------------------------
        def prep(groups, what):
            # groups[k][i]: image i of input/target list k. Percentile ranges come from
            # the input (k = 0) and are shared by the images of each pair.
            ranges = [
                _percentile_range(im) if self.normalization == "percentile" else None for im in groups[0]
            ]
            return [
                [
                    _apply_channel_rule(_normalize(im, self.normalization, r), want, cfg.channel_rule, what)
                    for im, r in zip(ims, ranges, strict=True)
                ]
                for ims in groups
            ]

        raw_train, raw_val = train[0], (val[0] if val is not None else None)
        train = prep(train, "the training data")
        val = prep(val, "the validation data") if val is not None else None
        self.sure = mode == "self_supervised" and cfg.ssl_method == "sure"
        if self.sure:  # the noise variance of every pixel rides along as a second image list
            train = [train[0], self._variance_maps(raw_train, train[0])]
            if val is not None and len(val) == 1:
                val = [val[0], self._variance_maps(raw_val, val[0])]
        multiple = int(getattr(self.model, "size_multiple", 2 ** (int(self.model.config["depth"]) - 1)))
        if cfg.patch_size % multiple:
            raise ValueError(
                f"patch_size {cfg.patch_size} must be a multiple of {multiple} (2**(depth-1) for this model); "
                f"use {max(multiple, cfg.patch_size // multiple * multiple)} or {math.ceil(cfg.patch_size / multiple) * multiple}"
            )
        need = 2 * cfg.patch_size if mode == "self_supervised" else cfg.patch_size
        if val is None:
            train, val = _hold_out(train, cfg.val_fraction, need)
            self.data_summary["validation"] = (
                f"held out from the training data (val_fraction={cfg.val_fraction})"
            )
        else:
            self.data_summary["validation"] = "separate validation data"
        smallest = min(train[0], key=lambda im: min(im.shape[:2]))
        if min(smallest.shape[:2]) < need:
            what = (
                "2 x patch_size (self-supervised pairs are half-resolution)"
                if mode == "self_supervised"
                else "patch_size"
            )
            raise ValueError(
                f"{what} = {need} is larger than the smallest training image ({smallest.shape[0]}x{smallest.shape[1]}); "
                f"use patch_size <= {min(smallest.shape[:2]) // (2 if mode == 'self_supervised' else 1) // multiple * multiple}"
            )
        self.data_summary.update(
            {
                "images": len(train[0]),
                "names": names[:20],
                "shapes": sorted({f"{im.shape[0]}x{im.shape[1]}x{im.shape[2]}" for im in train[0]})[:10],
                "normalization": self.normalization,
                "channel_rule": cfg.channel_rule,
            }
        )
        if self.degradation is not None:
            self.data_summary["degradation"] = self.degradation.as_dict()

        # --- sources, validation set, trainer ------------------------------------
        if self.sure and val_targets is None:
            self.val_reference = SURE_ESTIMATE
        elif mode in ("n2n", "self_supervised") and val_targets is None:
            self.val_reference = NOISY_VIEW_N2N if mode == "n2n" else NOISY_VIEW_SUBSAMPLE
        else:
            self.val_reference = CLEAN_REFERENCE
        self.source = self._make_source(train, augment=True)
        val_source = self._make_source(val, augment=False)
        smallest_val = min(min(im.shape[:2]) for im in val[0])
        if mode == "self_supervised":
            smallest_val //= 2
        vp = cfg.val_patch or min(2 * cfg.patch_size, max(multiple, smallest_val // multiple * multiple))
        if vp % multiple:
            raise ValueError(f"val_patch {vp} must be a multiple of {multiple}")
        self.val = fixed_set(val_source, cfg.seed, cfg.val_count, vp)
        self.data_summary["val_reference"] = self.val_reference
        if mode == "self_supervised":
            self.data_summary["ssl_method"] = cfg.ssl_method
        if self.sure:
            self.data_summary["noise_model"] = (
                list(cfg.noise_model) if cfg.noise_model is not None else "estimated from each image"
            )
        self.trainer = Trainer(
            self.model,
            self.source,
            self.val,
            cfg.train_config(),
            cfg.run_dir,
            {"data": self.data_summary},
            objective=self._objective(),
            val_mse=selfsupervised.sure_mse() if self.val_reference == SURE_ESTIMATE else None,
        )
        self.resumed = bool(cfg.resume and self.trainer.try_resume())
        self.budget: BudgetPlanner | None = None
        if cfg.time_budget_s is not None:
            self.budget = BudgetPlanner(
                self.trainer,
                cfg.time_budget_s,
                plan_file=self.trainer.run_dir / "budget.json" if self.trainer.run_dir is not None else None,
                resumed=self.resumed,
            )
        self.stopped = False

    # --------------------------------------------------------------------- helpers
    def _task_of_degradation(self) -> str:
        kind = self.degradation.kind if self.degradation else "gaussian"
        return {"motion_blur": "deblur", "rain": "derain"}.get(kind, "denoise")

    @staticmethod
    def _degradation(spec) -> Degradation | None:
        if spec is None or isinstance(spec, Degradation):
            return spec
        if isinstance(spec, str):
            return Degradation(kind=spec)
        return Degradation(**spec)

    def _read_data(self, clean, inputs, targets, val_inputs, val_targets, val_clean, rgb):
        mode = self.mode
        if mode == "synthetic":
            if clean is None:
                raise ValueError("mode 'synthetic' needs clean= images (they are degraded on the fly)")
            if self.degradation is None:
                raise ValueError("mode 'synthetic' needs degradation= (e.g. 'gaussian' or Degradation(...))")
            ims, names = load_images(clean, rgb=rgb, label="clean")
            if val_clean is not None:
                vims, _ = load_images(val_clean, rgb=rgb, label="val_clean")
                return [ims], [vims], names
            if val_inputs is not None or val_targets is not None:
                return [ims], self._read_val_pairs(val_inputs, val_targets, rgb), names
            return [ims], None, names
        if mode in ("paired", "n2n"):
            labels = (
                ("inputs", "targets")
                if mode == "paired"
                else ("inputs (acquisition 1)", "targets (acquisition 2)")
            )
            if inputs is None or targets is None:
                raise ValueError(f"mode {mode!r} needs inputs= and targets= images")
            a, b, names = _pair_folders(inputs, targets, rgb, labels)
            _check_pairs(a, b, names, labels)
            val = self._read_val_pairs(val_inputs, val_targets, rgb) if val_inputs is not None else None
            return [a, b], val, names
        # self_supervised
        if inputs is None:
            raise ValueError("mode 'self_supervised' needs inputs= (the noisy images)")
        ims, names = load_images(inputs, rgb=rgb, label="inputs")
        if val_inputs is not None and val_targets is not None:
            return [ims], self._read_val_pairs(val_inputs, val_targets, rgb), names
        if val_inputs is not None:
            vims, _ = load_images(val_inputs, rgb=rgb, label="val_inputs")
            return [ims], [vims], names
        return [ims], None, names

    def _read_val_pairs(self, val_inputs, val_targets, rgb):
        if val_inputs is None or val_targets is None:
            raise ValueError("validation pairs need both val_inputs= and val_targets=")
        a, b, names = _pair_folders(val_inputs, val_targets, rgb, ("val_inputs", "val_targets"))
        _check_pairs(a, b, names, ("val_inputs", "val_targets"))
        return [a, b]

    def _variance_maps(self, raw: list[np.ndarray], normalized: list[np.ndarray]) -> list[np.ndarray]:
        """Noise variance of every pixel of the normalised images (``ssl_method="sure"``):
        ``cfg.noise_model`` carried through each image's intensity mapping, or estimated."""
        from .noise_model import NoiseModel, variance_map

        maps = []
        for im, norm in zip(raw, normalized, strict=True):
            model = None
            if self.cfg.noise_model is not None:
                r = _percentile_range(im) if self.normalization == "percentile" else None
                ends = _normalize(np.array([0, 1], dtype=im.dtype), self.normalization, r)
                ends = ends.astype(np.float64) / (255.0 if ends.dtype == np.uint8 else 1.0)
                scale = 1.0 / (ends[1] - ends[0])  # y' = (y - low) / scale
                model = NoiseModel(*self.cfg.noise_model).rescaled(-ends[0] * scale, scale)
            pixels = norm.astype(np.float32) / (255.0 if norm.dtype == np.uint8 else 1.0)
            maps.append(variance_map(pixels, model))
        return maps

    def _make_source(self, lists: list[list[np.ndarray]], augment: bool):
        if self.sure and len(lists) == 2 and (augment or self.val_reference == SURE_ESTIMATE):
            return NoiseMapSource(lists[0], variances=lists[1], augment=augment)
        if len(lists) == 2 and (self.mode != "n2n" or not augment):
            # paired data, and every validation set given as pairs (clean or second acquisition)
            return PairedSource(lists[0], lists[1], augment=augment, swap=False)
        if self.mode == "n2n":
            return PairedSource(lists[0], lists[1], augment=augment, swap=True)
        if self.mode == "synthetic":
            return SyntheticSource(lists[0], self.degradation, augment=augment)
        if augment and self.cfg.ssl_method != "neighbor":  # training patches for an objective
            scale = 2 if self.cfg.ssl_method == "neighbor_reg" else 1
            return NoisyPatchSource(lists[0], augment=True, scale=scale)
        return NeighborSource(lists[0], augment=augment)  # validation: always neighbour pairs

    def _objective(self):
        """The training loss when it is not the plain two-stage loss (self-supervised methods)."""
        if self.mode != "self_supervised" or self.cfg.ssl_method == "neighbor":
            return None
        if self.sure:
            return selfsupervised.sure_objective()
        if self.cfg.ssl_method == "neighbor_reg":
            from .losses import make_loss

            return selfsupervised.neighbor_objective(make_loss(self.cfg.loss, self.cfg.loss_weight))
        return selfsupervised.blind_spot_objective(l1=self.cfg.loss == "l1")

    # --------------------------------------------------------------------- running
    @property
    def steps_done(self) -> int:
        return self.trainer.step

    # --------------------------------------------------------------- time budget
    @property
    def budget_plan(self) -> dict | None:
        """The time-budget plan (:class:`~napari_hinet.training.budget.BudgetPlanner`), once fitted."""
        return self.budget.plan if self.budget is not None else None

    def _run_on_budget(self, should_stop):
        for event in self.trainer.run(should_stop):
            self.budget.observe(event)
            event.total = self.trainer.cfg.steps
            yield event

    def run(self, should_stop: Callable[[], bool] | None = None):
        """Train; yields a StepEvent per step. Stops early (checkpointed) when should_stop() is True.

        With ``time_budget_s``, the events of the first few steps carry a
        provisional ``total``; from the step that fits the budget on, the final one.
        """
        self.stopped = False
        if self.cfg.time_budget_s is None:
            yield from self.trainer.run(should_stop)
        else:
            yield from self._run_on_budget(should_stop)
        self.stopped = self.trainer.step < self.trainer.cfg.steps

    def default_name(self) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.base_name.split("(")[0]).strip("-") or "hinet"
        return f"{base}-{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}"

    def save(self, path: str | os.PathLike | None = None, name: str | None = None) -> Path:
        """Save the best-by-validation model with metadata (default: the user models folder)."""
        from napari_hinet import __version__
        from napari_hinet.checkpoints import save_model

        from .export import hardware_summary

        name = name or self.cfg.name or self.default_name()
        if path is None:
            from napari_hinet.registry import user_models_dir

            path = Path(user_models_dir()) / f"{name}.safetensors"
        model = self.trainer.best_model()
        cfg = self.trainer.cfg
        save_model(
            model,
            Path(path),
            name=name,
            task=self.task,
            config=dict(model.config),
            patch_size=cfg.patch_size,
            input_range=[0.0, 1.0],
            normalization=self.normalization,
            channels="rgb" if int(model.config["in_chn"]) == 3 else "gray",
            training={
                "base_model": self.base_name,
                "mode": self.mode,
                "data": self.data_summary,
                "steps": self.trainer.step,
                "seed": cfg.seed,
                "recipe": {k: v for k, v in asdict(cfg).items()},
                "wall_time_s": round(self.trainer.wall_time_s, 1),
                "time_budget": self.budget_plan,
                "hardware": hardware_summary(cfg),
                "package_version": __version__,
            },
            metrics={
                "val_psnr": self.trainer.best_psnr,
                "val_psnr_start": self.trainer.start_psnr,
                "val_reference": self.val_reference,
                "val_target": self.val_reference,  # older name of val_reference
            },
            licence="user-trained; depends on the training data's terms",
        )
        return Path(path)

    def result(self, path: Path | None) -> FinetuneResult:
        model = self.trainer.best_model().eval()
        return FinetuneResult(
            model=model,
            path=path,
            steps=self.trainer.step,
            val_psnr=self.trainer.best_psnr,
            val_psnr_start=self.trainer.start_psnr,
            val_reference=self.val_reference,
            history=self.trainer.history,
            stopped=self.stopped,
            wall_time_s=self.trainer.wall_time_s,
            run_dir=self.trainer.run_dir,
        )


def finetune(
    base_model: Any = None,
    *,
    mode: str = "synthetic",
    clean: ImageData | None = None,
    inputs: ImageData | None = None,
    targets: ImageData | None = None,
    degradation: Degradation | dict | str | None = None,
    val_inputs: ImageData | None = None,
    val_targets: ImageData | None = None,
    val_clean: ImageData | None = None,
    rgb: bool | None = None,
    config: FinetuneConfig | None = None,
    progress: Callable[[int, int, float, float | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    save: bool = True,
    save_path: str | os.PathLike | None = None,
) -> FinetuneResult:
    """Fine-tune ``base_model`` (or train a new HINet) on your data; see the module docstring.

    Args:
        base_model: ``None`` (new HINet from ``config.model``), a registry name, a
            path to a ``.safetensors``/official ``.pth`` file, or a HINet instance.
        mode: ``"synthetic"``, ``"paired"``, ``"n2n"`` or ``"self_supervised"``.
        clean, inputs, targets, degradation: the training data of the mode.
        val_inputs, val_targets, val_clean: separate validation data (else a part
            of the training data is held out, ``config.val_fraction``).
        rgb: how to read 3-D arrays whose last axis is 3 or 4 (None: as RGB).
        config: :class:`FinetuneConfig` (steps, batch, patch, lr, ...).
        progress: called after every step as ``progress(step, total, loss, val_psnr)``;
            ``val_psnr`` (dB) is None except on validation steps.
        should_stop: polled before every step; True ends training (checkpointed).
        preview: called on validation steps as ``preview(step, input, output, target)``
            with ``(H, W, C)`` float arrays of the first validation patch.
        save: save the best model into the user models folder (or ``save_path``),
            where the restore widgets and ``restore()`` find it.

    Returns:
        :class:`FinetuneResult`.

    Raises:
        ValueError / FileNotFoundError: bad data or configuration (before training).
        TrainingDiverged: the loss became NaN/Inf (the last good state is kept).
    """
    job = FinetuneJob(
        base_model,
        mode=mode,
        clean=clean,
        inputs=inputs,
        targets=targets,
        degradation=degradation,
        val_inputs=val_inputs,
        val_targets=val_targets,
        val_clean=val_clean,
        rgb=rgb,
        config=config,
    )
    if preview is not None and job.trainer.step == 0:
        sample = job.trainer.predict_val(0)
        if sample is not None:
            preview(0, *sample)
    for event in job.run(should_stop):
        if progress is not None:
            progress(event.step, event.total, event.loss, event.val_psnr)
        if preview is not None and event.val_psnr is not None:
            sample = job.trainer.predict_val(0)
            if sample is not None:
                preview(event.step, *sample)
    path = None
    if save:
        path = job.save(save_path)
    return job.result(path)
