#!/usr/bin/env python
"""Quality of the bundled HINet models against classical methods, on held-out test images.

Every method sees exactly the same degraded inputs: center (and seeded random)
crops of the test split (``napari_hinet.training.splits.TEST_NATURAL`` and
``TEST_MICROSCOPY``; never trained on or used for model selection), degraded by
``napari_hinet.data.degrade`` with fixed seeds.

Tasks, conditions and methods:

=============  =============================================  ==========================================
task           conditions                                     methods (besides ``input`` and ``ours``)
=============  =============================================  ==========================================
denoise-photo  AWGN sigma 15, 25, 50 /255 (RGB, unclipped)    NLM, BM3D (both given the true sigma)
denoise-gray-  the same on gray photos (luminance), given to  NLM, BM3D on the gray image
photo          the RGB photo model as a gray image (the
               engine copies it into R, G, B)
denoise-fluo   Poisson-Gaussian, 10 and 100 photons at        NLM, BM3D, both inside the generalized
               intensity 1, read noise 2 % of the range       Anscombe transform with the true noise
                                                              parameters (+ closed-form unbiased inverse)
deblur         random camera shake + 1 % AWGN (RGB)           Wiener and Richardson-Lucy, both given
                                                              the TRUE kernel (ours is blind)
derain         synthetic rain, light and heavy (RGB)          median filter
=============  =============================================  ==========================================

The free parameters of the classical methods that are not given by the
degradation (Wiener balance, Richardson-Lucy iterations, median size) are
chosen per condition by the best mean PSNR on validation crops
(``VAL_NATURAL``), never on the test images.

Metrics: PSNR (dB, peak 1) and SSIM (skimage, ``data_range=1``,
``channel_axis=-1`` for RGB) of outputs clipped to [0, 1] against the clean
crop; seconds per megapixel (wall clock of the method call only, model loading
excluded; ``torch`` and BLAS limited to ``--threads`` threads; the machine load
is recorded). ``ours`` runs through :class:`napari_hinet.Restorer` (the engine
behind :func:`napari_hinet.restore`) with its default tiling, the model's own
normalization and ``compile="off"``.

Examples::

    # classical baselines only (no model needed), then add our models later
    python benchmarks/quality.py --methods input,nlm,bm3d,wiener,rl,median
    python benchmarks/quality.py --methods ours --merge --figures
    # evaluate training checkpoints instead of the packaged weights
    python benchmarks/quality.py --methods ours --merge --from-runs runs
    python benchmarks/quality.py --tasks deblur --model runs/hinet-deblur-photo/best.pt
    python benchmarks/quality.py --quick        # smoke run: one 128x128 crop per image

Output: a markdown table on stdout, per-target verdicts, and JSON
(``benchmarks/results/quality.json`` by default: per-image records, summary
rows, targets, settings, machine).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from napari_hinet.data import degrade  # noqa: E402
from napari_hinet.training import splits  # noqa: E402
from napari_hinet.training.datasets import luminance  # noqa: E402
from napari_hinet.training.pool import load_image, percentile_normalize  # noqa: E402

DEFAULT_POOL = Path(os.environ.get("HINET_POOL", "/work/pool/training_pool"))
DEFAULT_OUT = REPO / "benchmarks" / "results" / "quality.json"
FIGURE_DIR = REPO / "docs" / "images"
BASE_SEED = 2026

#: Poisson-Gaussian test levels: photons at intensity 1.0; read noise = 2 % of the range.
PG_LEVELS = {"pg10": 10.0, "pg100": 100.0}
PG_READ_FRACTION = 0.02
#: Planes of the held-out confocal volume used for testing (of 60). Planes below 25 are out of
#: focus: their percentile-normalised "clean" reference is mostly the camera's own noise
#: (skimage ``estimate_sigma`` 0.12-0.15 for planes 0-15, 0.075 at 20, 0.024-0.030 from 25 on;
#: the added noise at 100 photons is ~0.06), so a denoiser that removes it is scored as wrong.
#: Until 2026-12-02 plane 15 was used instead of 25 (quality_v2.json before that date).
NUCLEI_PLANES = (25, 30, 45)


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task: its bundled model, test conditions and classical methods."""

    model: str
    conditions: tuple[str, ...]
    classical: tuple[str, ...]
    gray: bool  # single-channel task (fluorescence, gray photos)
    photos_gray: bool = False  # test images are gray photos only (no microscopy)


TASKS: dict[str, TaskSpec] = {
    "denoise-photo": TaskSpec(
        "hinet-denoise-photo", ("sigma15", "sigma25", "sigma50"), ("nlm", "bm3d"), False
    ),
    "denoise-gray-photo": TaskSpec(
        "hinet-denoise-photo", ("sigma15", "sigma25", "sigma50"), ("nlm", "bm3d"), True, photos_gray=True
    ),
    "denoise-fluo": TaskSpec("hinet-denoise-fluo", ("pg10", "pg100"), ("nlm", "bm3d"), True),
    "deblur": TaskSpec("hinet-deblur-photo", ("shake",), ("wiener", "rl"), False),
    "derain": TaskSpec("hinet-derain-photo", ("light", "heavy"), ("median",), False),
}
ALL_METHODS = ("input", "ours", "ours-ensemble", "nlm", "bm3d", "wiener", "rl", "median")

#: Figure per task: (condition, test image) shown in docs/images/quality_<task>.png.
FIGURES = {
    "denoise-photo": ("sigma25", "natural/skimage/astronaut.png"),
    "denoise-gray-photo": ("sigma25", "natural/skimage/astronaut.png"),
    "denoise-fluo": ("pg10", "microscopy/stardist/img2d.tif"),
    "deblur": ("shake", "natural/skimage/astronaut.png"),
    "derain": ("heavy", "natural/skimage/astronaut.png"),
}

#: Grids for the classical parameters chosen on validation crops.
TUNING_GRIDS = {
    "wiener": (0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0),
    "rl": (5, 10, 15, 20, 30, 40),
    "median": (3, 5, 7),
}


# ============================================================================ data
@dataclass
class Sample:
    """A degraded test crop and everything a method may legitimately know about it."""

    image: str  # pool-relative source path (+ "#plane")
    crop: int  # crop index within the image
    clean: np.ndarray  # float32 (H, W, C) in [0, 1]
    degraded: np.ndarray  # float32 (H, W, C)
    truth: dict = field(default_factory=dict)  # sigma_255 / photons+read_sigma / kernel


def _load_photo(pool: Path, rel: str) -> np.ndarray:
    """A pool photo as float32 RGB (H, W, 3) in [0, 1], preprocessed like the training pool."""
    img = load_image(pool / rel)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if any(rel.startswith(p) for p in splits.DOWNSCALE_2X):
        from PIL import Image

        pil = Image.fromarray(img)
        img = np.asarray(pil.resize((pil.width // 2, pil.height // 2), Image.Resampling.LANCZOS))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img.astype(np.float32) / 255.0


def _load_micro_planes(pool: Path, rel: str) -> dict[str, np.ndarray]:
    """Test planes of a microscopy file, percentile-normalised and clipped like the pool, (H, W, 1)."""
    img = load_image(pool / rel)
    planes = {rel: img} if img.ndim == 2 else {f"{rel}#{i}": img[i] for i in NUCLEI_PLANES}
    return {
        k: np.clip(percentile_normalize(v), 0, 1)[..., None].astype(np.float32) for k, v in planes.items()
    }


def task_images(pool: Path, task: str, split: str = "test") -> dict[str, np.ndarray]:
    """The clean images of a task: float32 (H, W, C) in [0, 1], keyed by pool-relative name."""
    natural = splits.TEST_NATURAL if split == "test" else splits.VAL_NATURAL
    photos = {rel: _load_photo(pool, rel) for rel in natural}
    if not TASKS[task].gray:
        return photos
    if TASKS[task].photos_gray:
        return {f"{k} (gray)": luminance(v) for k, v in photos.items()}
    images: dict[str, np.ndarray] = {}
    if split == "test":
        for rel in splits.TEST_MICROSCOPY:
            images.update(_load_micro_planes(pool, rel))
    images.update({f"{k} (gray)": luminance(v) for k, v in photos.items()})
    return images


def crops_of(img: np.ndarray, size: int, count: int, seed: list[int]) -> list[np.ndarray]:
    """The center crop, then ``count - 1`` seeded random crops (fewer if the image is that small)."""
    h, w = img.shape[:2]
    size_h, size_w = min(size, h), min(size, w)
    boxes = [((h - size_h) // 2, (w - size_w) // 2)]
    rng = np.random.default_rng(seed)
    if h > size_h or w > size_w:
        for _ in range(count - 1):
            boxes.append((int(rng.integers(0, h - size_h + 1)), int(rng.integers(0, w - size_w + 1))))
    return [np.ascontiguousarray(img[y : y + size_h, x : x + size_w]) for y, x in boxes[:count]]


def sample_seed(task: str, condition: str, image: str, crop: int) -> list[int]:
    """Fixed seed of one degraded crop (independent of which other samples are run)."""
    return [BASE_SEED, zlib.crc32(f"{task}|{condition}|{image}|{crop}".encode())]


def make_degraded(task: str, condition: str, clean: np.ndarray, seed: list[int]) -> tuple[np.ndarray, dict]:
    """(degraded float32 image, ground-truth parameters) for one condition."""
    if condition.startswith("sigma"):
        sigma = float(condition[len("sigma") :])
        return degrade.gaussian(clean, sigma, seed), {"sigma_255": sigma}
    if condition in PG_LEVELS:
        photons = PG_LEVELS[condition]
        read = PG_READ_FRACTION * photons
        return degrade.poisson_gaussian(clean, photons, read, seed), {"photons": photons, "read_sigma": read}
    if condition == "shake":
        blurred, kernel = degrade.motion_blur(clean, seed, noise_sigma_255=2.55)
        return blurred, {"kernel": kernel, "sigma_255": 2.55}
    if condition in ("light", "heavy"):
        return degrade.rain(clean, seed, mode=condition), {"mode": condition}
    raise ValueError(f"unknown condition {condition!r} of task {task!r}")


def make_samples(pool: Path, task: str, condition: str, crop: int, count: int, split: str = "test"):
    """All degraded crops of one (task, condition)."""
    out = []
    for name, img in task_images(pool, task, split).items():
        for i, clean in enumerate(crops_of(img, crop, count, [BASE_SEED, zlib.crc32(name.encode())])):
            deg, truth = make_degraded(task, condition, clean, sample_seed(task, condition, name, i))
            out.append(Sample(name, i, clean, deg, truth))
    return out


# ============================================================================ classical methods
def _per_channel(fn: Callable[[np.ndarray], np.ndarray], img: np.ndarray) -> np.ndarray:
    return np.stack([fn(img[..., c]) for c in range(img.shape[-1])], axis=-1)


def gat_forward(y: np.ndarray, photons: float, read_sigma: float) -> np.ndarray:
    """Generalized Anscombe transform of ``y`` (intensity units, gain 1/photons): noise std ~1."""
    return 2.0 * np.sqrt(np.maximum(y * photons + 0.375 + read_sigma**2, 0.0))


def gat_inverse(d: np.ndarray, photons: float, read_sigma: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of the GAT (Makitalo and Foi, 2013).

    Below ``d = 2*sqrt(3/8)`` (zero counts, no read noise) the asymptotic series is
    meaningless and the result is 0.
    """
    d = np.maximum(d.astype(np.float64), 2.0 * np.sqrt(0.375))
    s = np.sqrt(1.5)
    e = 0.25 * d**2 + 0.25 * s / d - 11.0 / 8.0 / d**2 + 5.0 / 8.0 * s / d**3 - 0.125 - read_sigma**2
    return (np.maximum(e, 0.0) / photons).astype(np.float32)


def _gaussian_denoiser(name: str) -> Callable[[np.ndarray, float], np.ndarray]:
    """``fn(img (H, W, C), sigma)`` for NLM or BM3D, sigma in the image's units."""
    if name == "bm3d":
        import bm3d

        def run_bm3d(img: np.ndarray, sigma: float) -> np.ndarray:
            if img.shape[-1] == 3:
                return np.asarray(bm3d.bm3d_rgb(img, sigma), np.float32)
            return np.asarray(bm3d.bm3d(img[..., 0], sigma), np.float32)[..., None]

        return run_bm3d
    from skimage.restoration import denoise_nl_means

    def run_nlm(img: np.ndarray, sigma: float) -> np.ndarray:
        # skimage's recommended setting for fast_mode with a known sigma: h = 0.8 sigma.
        out = denoise_nl_means(
            img, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=-1
        )
        return np.asarray(out, np.float32).reshape(img.shape)

    return run_nlm


def denoise_classical(name: str, s: Sample) -> np.ndarray:
    """NLM or BM3D with the true noise level (inside the GAT for Poisson-Gaussian noise)."""
    fn = _gaussian_denoiser(name)
    if "photons" in s.truth:
        photons, read = s.truth["photons"], s.truth["read_sigma"]
        z = gat_forward(s.degraded, photons, read)
        scale = float(gat_forward(np.float32(1.0), photons, read))  # bring the GAT range to ~[0, 1]
        return gat_inverse(fn(z / scale, 1.0 / scale) * scale, photons, read)
    return fn(s.degraded, s.truth["sigma_255"] / 255.0)


def _padded(fn: Callable[[np.ndarray], np.ndarray], plane: np.ndarray, pad: int) -> np.ndarray:
    """Run ``fn`` on a mirror-padded plane and crop back (avoids FFT wrap-around ringing)."""
    out = fn(np.pad(plane, pad, mode="symmetric"))
    return out[pad:-pad, pad:-pad]


def wiener_true_kernel(s: Sample, balance: float) -> np.ndarray:
    """skimage Wiener (Laplacian regulariser) with the true kernel, per channel."""
    from skimage.restoration import wiener

    k = s.truth["kernel"].astype(np.float64)
    fn = lambda p: wiener(p, k, balance, clip=False)  # noqa: E731
    return _per_channel(lambda p: _padded(fn, p.astype(np.float64), k.shape[0]), s.degraded).astype(
        np.float32
    )


def rl_true_kernel(s: Sample, iterations: int) -> np.ndarray:
    """skimage Richardson-Lucy with the true kernel, per channel."""
    from skimage.restoration import richardson_lucy

    k = s.truth["kernel"].astype(np.float64)
    fn = lambda p: richardson_lucy(p, k, num_iter=iterations, clip=False)  # noqa: E731
    img = np.clip(s.degraded, 0, None).astype(np.float64)
    return _per_channel(lambda p: _padded(fn, p, k.shape[0]), img).astype(np.float32)


def median(s: Sample, size: int) -> np.ndarray:
    """Per-channel square median filter."""
    from scipy import ndimage

    return ndimage.median_filter(s.degraded, size=(size, size, 1), mode="reflect").astype(np.float32)


# ============================================================================ metrics
def metrics(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``out`` clipped to [0, 1] against ``clean``; peak 1."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out = np.clip(out, 0.0, 1.0).astype(np.float64)
    ref = clean.astype(np.float64)
    psnr = peak_signal_noise_ratio(ref, out, data_range=1.0)
    if ref.shape[-1] == 1:
        ssim = structural_similarity(ref[..., 0], out[..., 0], data_range=1.0)
    else:
        ssim = structural_similarity(ref, out, data_range=1.0, channel_axis=-1)
    return float(psnr), float(ssim)


def tune_classical(pool: Path, task: str, condition: str, method: str, crop: int) -> float | int:
    """The parameter of ``method`` with the best mean PSNR on validation crops (one per image)."""
    grid = TUNING_GRIDS[method]
    samples = make_samples(pool, task, condition, crop, 1, split="val")
    run = {"wiener": wiener_true_kernel, "rl": rl_true_kernel, "median": median}[method]
    scores = [np.mean([metrics(run(s, p), s.clean)[0] for s in samples]) for p in grid]
    return grid[int(np.argmax(scores))]


# ============================================================================ our models
def load_ours(source: str):
    """A :class:`napari_hinet.Restorer` for a registry name, a weights file or a training checkpoint."""
    from napari_hinet import Restorer

    return Restorer(load_ours_model(source), compile="off")


def load_ours_model(source: str):
    """The float32 ``HINet`` of a registry name, a weights file or a training checkpoint.

    Training checkpoints (``runs/<name>/best.pt`` or ``last.pt``) are plain
    tensor dicts (loaded with ``weights_only=True``); their metadata (patch
    size, normalization, task) comes from ``configs/bundled/<name>.yaml``.
    """
    import torch

    from napari_hinet import load_model

    path = Path(source)
    if path.suffix == ".pt" and path.is_file():
        import yaml

        from napari_hinet.checkpoints import infer_config
        from napari_hinet.model import HINet

        state = torch.load(path, map_location="cpu", weights_only=True)
        sd = state["model"]
        cfg = yaml.safe_load((REPO / "configs" / "bundled" / f"{path.parent.name}.yaml").read_text())
        model = HINet(**infer_config(sd))
        model.load_state_dict({k: v.float() for k, v in sd.items()})
        model.metadata = {
            "name": f"{path.parent.name} ({path.name}, step {state.get('step')})",
            "task": cfg["task"],
            "channels": cfg["channels"],
            "normalization": cfg["normalization"],
            "patch_size": cfg["train"]["patch_size"],
        }
        return model
    return load_model(source)


#: Engine options for ``ours`` (``--tiling``, ``--tile``); empty = the engine's defaults.
OURS_OPTIONS: dict = {}


#: Our methods: the bundled model as a user runs it by default, and with the self-ensemble option.
OURS_METHODS = ("ours", "ours-ensemble")


def run_ours(restorer, s: Sample, ensemble: bool = False) -> np.ndarray:
    """Our model through the engine: default tiling (or ``OURS_OPTIONS``), the model's own
    normalization, float32 out; ``ensemble``: the engine's self-ensemble (``ensemble=True``)."""
    axes = "YX" if s.degraded.shape[-1] == 1 else "YXC"
    image = s.degraded[..., 0] if axes == "YX" else s.degraded
    norm = restorer.metadata.get("normalization", "fixed")
    out = restorer.restore(
        image, axes=axes, normalization=norm, out_dtype="float32", ensemble=ensemble, **OURS_OPTIONS
    )
    return np.asarray(out, np.float32).reshape(s.degraded.shape)


# ============================================================================ the benchmark
@dataclass
class Record:
    """One method on one degraded crop."""

    task: str
    condition: str
    image: str
    crop: int
    method: str
    psnr: float
    ssim: float
    seconds: float
    megapixels: float
    detail: str = ""

    def key(self) -> tuple:
        return (self.task, self.condition, self.image, self.crop, self.method)


def method_runner(method: str, task: str, params: dict, restorers: dict) -> Callable[[Sample], np.ndarray]:
    """``fn(sample) -> output`` for one method (parameters already chosen)."""
    if method == "input":
        return lambda s: s.degraded
    if method in OURS_METHODS:
        return lambda s: run_ours(restorers[task], s, ensemble=method == "ours-ensemble")
    if method in ("nlm", "bm3d"):
        return lambda s: denoise_classical(method, s)
    if method == "wiener":
        return lambda s: wiener_true_kernel(s, params["wiener"])
    if method == "rl":
        return lambda s: rl_true_kernel(s, params["rl"])
    if method == "median":
        return lambda s: median(s, params["median"])
    raise ValueError(method)


def evaluate(samples: list[Sample], task: str, condition: str, methods: list[str], params: dict, restorers):
    """Records of every method on every sample, printed as they come."""
    records, outputs = [], {}
    for method in methods:
        run = method_runner(method, task, params, restorers)
        for s in samples:
            t0 = time.perf_counter()
            out = run(s)
            seconds = time.perf_counter() - t0 if method != "input" else 0.0
            psnr, ssim = metrics(out, s.clean)
            mp = s.clean.shape[0] * s.clean.shape[1] / 1e6
            detail = {"wiener": "balance", "rl": "iterations", "median": "size"}.get(method, "")
            detail = f"{detail}={params[method]}" if detail else ""
            if method in OURS_METHODS:
                detail = restorers[task].describe()
                if method == "ours-ensemble":
                    views = restorers[task].plan(s.degraded.shape[:2], ensemble=True)["ensemble"]
                    detail += f", self-ensemble x{views}"
            records.append(Record(task, condition, s.image, s.crop, method, psnr, ssim, seconds, mp, detail))
            outputs[(method, s.image, s.crop)] = out
            print(
                f"  {task:13s} {condition:8s} {method:13s} {s.image[:40]:40s} #{s.crop} "
                f"{psnr:6.2f} dB {ssim:.3f} {seconds:7.2f} s",
                flush=True,
            )
    return records, outputs


#: Test photos that are mostly smooth or out of focus (2x-downscaled wallpapers with
#: bokeh): methods rank differently on them, so the report also splits by subset.
SMOOTH_IMAGES = ("natural/plasma/Kite.jpg", "natural/mate/LadyBird.jpg")


def subset_of(image: str) -> str:
    """``"microscopy"``, ``"smooth"`` (:data:`SMOOTH_IMAGES`) or ``"textured"`` (other photos)."""
    if image.startswith("microscopy/"):
        return "microscopy"
    return "smooth" if image.split(" ")[0] in SMOOTH_IMAGES else "textured"


def summarize(records: list[Record], by_subset: bool = False) -> list[dict]:
    """Mean PSNR/SSIM and total seconds / total megapixels per (task, condition[, subset], method)."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        cond = f"{r.condition} {subset_of(r.image)}" if by_subset else r.condition
        groups.setdefault((r.task, cond, r.method), []).append(r)
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    rows = []
    for (task, cond, method), rs in sorted(
        groups.items(), key=lambda kv: (list(TASKS).index(kv[0][0]), kv[0][1], order[kv[0][2]])
    ):
        rows.append(
            {
                "task": task,
                "condition": cond,
                "method": method,
                "psnr": round(float(np.mean([r.psnr for r in rs])), 3),
                "ssim": round(float(np.mean([r.ssim for r in rs])), 4),
                "s_per_mp": round(sum(r.seconds for r in rs) / sum(r.megapixels for r in rs), 3),
                "n": len(rs),
                "detail": rs[0].detail,
            }
        )
    return rows


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets: ours vs BM3D / Wiener / input + margin, met or missed by how much (dB)."""
    psnr = {(r["task"], r["condition"], r["method"]): r["psnr"] for r in rows}
    checks = []
    wanted = [("denoise-photo", c, "bm3d", 0.0) for c in TASKS["denoise-photo"].conditions]
    wanted += [("denoise-gray-photo", c, "bm3d", 0.0) for c in TASKS["denoise-gray-photo"].conditions]
    wanted += [("denoise-fluo", c, "bm3d", 0.0) for c in TASKS["denoise-fluo"].conditions]
    wanted += [("deblur", "shake", "input", 3.0), ("deblur", "shake", "rl", 0.0)]
    wanted += [("derain", "light", "input", 4.0)]
    wanted += [("derain", "heavy", "input", 6.0)]
    for (task, cond, ref, margin), method in itertools.product(wanted, OURS_METHODS):
        ours, base = psnr.get((task, cond, method)), psnr.get((task, cond, ref))
        if ours is None or base is None:
            continue
        goal = base + margin
        checks.append(
            {
                "task": task,
                "condition": cond,
                "method": method,
                "target": f"{method} >= {ref}" + (f" + {margin:g} dB" if margin else ""),
                "ours_psnr": ours,
                "goal_psnr": round(goal, 3),
                "delta_db": round(ours - goal, 3),
                "met": bool(ours >= goal),
            }
        )
    return checks


def markdown_table(rows: list[dict]) -> str:
    lines = ["| task | condition | method | PSNR (dB) | SSIM | s/MP | n |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r['method']}**" if r["method"] in OURS_METHODS else r["method"]
        speed = "-" if r["method"] == "input" else f"{r['s_per_mp']:.2f}"
        lines.append(
            f"| {r['task']} | {r['condition']} | {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {speed} | {r['n']} |"
        )
    return "\n".join(lines)


def target_lines(checks: list[dict]) -> list[str]:
    return [
        f"{'MET   ' if c['met'] else 'MISSED'} {c['task']} {c['condition']}: {c['target']}: "
        f"{c['ours_psnr']:.2f} dB vs goal {c['goal_psnr']:.2f} dB ({c['delta_db']:+.2f} dB)"
        for c in checks
    ]


# ============================================================================ figures
def save_figure(task: str, pool: Path, crop: int, params: dict, restorers: dict) -> Path:
    """docs/images/quality_<task>.png: degraded | ours | best classical | clean (one test crop).

    ``params``: the classical parameters of the figure's condition (missing ones are tuned here).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    condition, image = FIGURES[task]
    samples = [s for s in make_samples(pool, task, condition, crop, 1) if s.image == image]
    s = samples[0]
    classical = list(TASKS[task].classical)
    params = dict(params)
    for m in classical:
        if m in TUNING_GRIDS and m not in params:
            params[m] = tune_classical(pool, task, condition, m, crop)
    _, outputs = evaluate([s], task, condition, ["input", "ours", *classical], params, restorers)
    best = max(classical, key=lambda m: metrics(outputs[(m, s.image, 0)], s.clean)[0])
    panels = [("input", "degraded"), ("ours", "ours (HINet, blind)"), (best, f"best classical: {best}")]
    # gray (fluorescence): one display range for all panels, from the clean crop's 99.5th percentile
    vmax = float(np.percentile(s.clean, 99.5)) if s.clean.shape[-1] == 1 else 1.0
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.9))
    for ax, (key, title) in zip(axes, panels, strict=False):
        out = np.clip(outputs[(key, s.image, 0)], 0, 1)
        p, q = metrics(out, s.clean)
        _show(ax, out, f"{title}\n{p:.2f} dB / SSIM {q:.3f}", vmax)
    _show(axes[3], s.clean, "clean (held-out test image)\n", vmax)
    shown = "" if vmax == 1.0 else f"; display range 0..{vmax:.2f}"
    fig.suptitle(f"{task}, {condition}: {image} (center {s.clean.shape[0]}x{s.clean.shape[1]} crop{shown})")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    FIGURE_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURE_DIR / f"quality_{task}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _show(ax, img: np.ndarray, title: str, vmax: float = 1.0) -> None:
    """One panel; gray images use the display range [0, vmax] (the same for every panel)."""
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    else:
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")


# ============================================================================ main
def machine() -> dict:
    import torch

    from napari_hinet.engine.devices import cpu_name

    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=Path, default=DEFAULT_POOL, help="training pool root (default %(default)s)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma list of %(default)s")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help="comma list of %(default)s")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="evaluate this model as 'ours' (registry name, .safetensors, or runs/<name>/best.pt); "
        "its task comes from its metadata or run folder name. Repeatable.",
    )
    p.add_argument(
        "--from-runs",
        type=Path,
        metavar="RUNS_DIR",
        help="use RUNS_DIR/<bundled name>/best.pt as 'ours' where no --model is given",
    )
    p.add_argument("--crop", type=int, default=256, help="crop side in pixels (default %(default)s)")
    p.add_argument("--crops", type=int, default=2, help="crops per test image (center + seeded random)")
    p.add_argument("--quick", action="store_true", help="smoke run: one 128x128 center crop per image")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the records of --out that this run does not recompute (same crop settings)",
    )
    p.add_argument("--figures", action="store_true", help="write docs/images/quality_<task>.png")
    p.add_argument("--tiling", choices=("blend", "official", "none"), help="engine tiling for 'ours'")
    p.add_argument("--tile", type=int, help="engine tile size for 'ours' (default: the model's patch size)")
    p.add_argument("--report", action="store_true", help="only print the table and targets of --out")
    args = p.parse_args(argv)
    if args.quick:
        args.crop, args.crops = 128, 1
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for t in args.tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
    for m in args.methods:
        if m not in ALL_METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(ALL_METHODS)}")
    return args


def bench_task_of(restorer) -> str:
    """Benchmark task of a loaded model from its metadata (task + channels)."""
    meta = restorer.metadata
    task = meta.get("task")
    if task == "denoise":
        return "denoise-fluo" if restorer.in_channels == 1 else "denoise-photo"
    if task in ("deblur", "derain"):
        return task
    raise SystemExit(f"cannot tell which benchmark task model {meta.get('name')!r} is for (task={task!r})")


def ours_models(tasks: list[str], sources: list[str]) -> dict:
    """Benchmark task -> float32 ``HINet``: each of ``sources`` (registry name, weights file or
    training checkpoint) for the task its metadata names, the bundled model for the other ``tasks``."""
    from napari_hinet import Restorer

    models = {}
    for source in sources:
        net = load_ours_model(source)
        models[bench_task_of(Restorer(net, device="cpu", precision="fp32"))] = net
    for task in tasks:
        if task not in models:
            models[task] = load_ours_model(TASKS[task].model)
    return models


def resolve_models(args) -> dict:
    """Benchmark task -> Restorer for 'ours' (only for the requested tasks)."""
    restorers = {}
    for source in args.model:
        r = load_ours(source)
        restorers[bench_task_of(r)] = r
    if "denoise-photo" in restorers:  # the gray-photo task runs the same RGB photo model
        restorers.setdefault("denoise-gray-photo", restorers["denoise-photo"])
    for task in args.tasks:
        if task in restorers:
            continue
        name = TASKS[task].model
        if args.from_runs is not None:
            ckpt = args.from_runs / name / "best.pt"
            if ckpt.is_file():
                restorers[task] = load_ours(str(ckpt))
                continue
        try:
            restorers[task] = load_ours(name)
        except (FileNotFoundError, KeyError) as exc:
            print(f"NOTE: no model for {task} ({exc}); 'ours' is skipped for it", file=sys.stderr)
    return restorers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        saved = json.loads(args.out.read_text())
        print(markdown_table(saved["rows"]) + "\n\n" + "\n".join(target_lines(saved["targets"])))
        if "rows_by_subset" in saved:
            print("\nBy subset (smooth = " + ", ".join(SMOOTH_IMAGES) + "):\n")
            print(markdown_table(saved["rows_by_subset"]))
        return 0
    import torch

    OURS_OPTIONS.update({k: v for k, v in (("tiling", args.tiling), ("tile", args.tile)) if v is not None})
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HINET_NUM_THREADS", str(args.threads))
    if not (args.pool / "natural").is_dir():
        raise SystemExit(f"no training pool at {args.pool}; fetch it (docs/finetuning.md) or pass --pool")
    wants_ours = any(m in args.methods for m in OURS_METHODS)
    restorers = resolve_models(args) if wants_ours or args.figures else {}
    settings = {"crop": args.crop, "crops": args.crops, "base_seed": BASE_SEED}
    old_records, old_params = [], {}
    if args.merge and args.out.is_file():
        old = json.loads(args.out.read_text())
        if old.get("settings") != settings:
            raise SystemExit(
                f"--merge: {args.out} was made with {old.get('settings')}, this run uses {settings}"
            )
        old_records = [Record(**r) for r in old["records"]]
        old_params = old.get("classical_parameters", {})

    records: list[Record] = []
    params_all: dict[str, dict] = dict(old_params)
    t_start = time.perf_counter()
    for task in args.tasks:
        for condition in TASKS[task].conditions:
            methods = [m for m in args.methods if m in ("input", *TASKS[task].classical)]
            if task in restorers:
                ours = [m for m in OURS_METHODS if m in args.methods]
                at = min(1, len(methods))
                methods[at:at] = ours
            if not methods:
                continue
            params = {}
            for m in methods:
                if m in TUNING_GRIDS:
                    params[m] = tune_classical(args.pool, task, condition, m, args.crop)
            params_all.setdefault(f"{task}/{condition}", {}).update(params)
            samples = make_samples(args.pool, task, condition, args.crop, args.crops)
            recs, _ = evaluate(
                samples, task, condition, methods, params_all[f"{task}/{condition}"], restorers
            )
            records += recs
    new_keys = {r.key() for r in records}
    # a merged task keeps only records of images still in its test set (NUCLEI_PLANES may change)
    tested = {(r.task, r.image) for r in records}
    run_tasks = {r.task for r in records}
    kept = [r for r in old_records if r.task not in run_tasks or (r.task, r.image) in tested]
    records = [r for r in kept if r.key() not in new_keys] + records

    rows = summarize(records)
    checks = targets(rows)
    ours_models = {t: r.describe() for t, r in restorers.items()}
    history = []
    if args.merge and args.out.is_file():
        previous = json.loads(args.out.read_text())
        ours_models = {**previous.get("models", {}), **ours_models}
        history = previous.get("history", [])
    this_run = {
        "command": "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": machine(),
        "wall_time_s": round(time.perf_counter() - t_start, 1),
        "models": {t: r.describe() for t, r in restorers.items()},
    }
    result = {
        "settings": settings,
        "history": [*history, this_run],  # every run whose records are in this file (merge keeps them)
        "models": ours_models,
        "classical_parameters": params_all,
        "rows": rows,
        "rows_by_subset": summarize(records, by_subset=True),
        "targets": checks,
        "records": [asdict(r) for r in records],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print()
    print(markdown_table(rows))
    print()
    print("\n".join(target_lines(checks)) or "(no targets: 'ours' not evaluated)")
    print(f"\nmachine: {this_run['machine']}\nwrote {args.out}")
    if args.figures:
        for task in args.tasks:
            if task in restorers:
                params = params_all.get(f"{task}/{FIGURES[task][0]}", {})
                print(f"wrote {save_figure(task, args.pool, args.crop, params, restorers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
