#!/usr/bin/env python
"""Self-supervised fine-tuning on noisy-only microscopy images, at one wall-clock budget.

The user's situation: a few noisy fluorescence images and no clean ones. Every
method gets the same noisy images, the same number of CPU threads and (for the
trained ones) the same training time, and is scored on those same images
against the clean originals, which no method sees.

Data (rules, in order):

1. Held-out microscopy of the training pool (``splits.TEST_MICROSCOPY``, never
   trained on by the bundled models): planes :data:`NUCLEI_PLANES` of
   ``nuclei.tif`` (planes below 25 hold almost no signal: their "clean" version
   is mostly the camera's own noise, stretched by the normalisation) and the four 256 x 256 quadrants of ``img2d.tif``, i.e. nine
   256 x 256 images, each percentile-normalised and clipped to [0, 1] (the clean
   references).
2. With ``--binning 2`` the clean references are first averaged over 2 x 2
   pixels (``img2d.tif`` gives one 256 x 256 image, the planes 128 x 128 each):
   these "clean" images are low-count camera images themselves (``img2d.tif``
   peaks at 235 counts), and their own noise, about as strong as the added noise
   at 100 photons, is scored as signal; binning cuts its variance 4 x.
3. Poisson-Gaussian noise at ``--photons`` photons per unit intensity with read
   noise 2 % of the photon count (as ``benchmarks/quality.py``), fixed seeds.

Methods:

``input``        the noisy images.
``bundled``      ``hinet-denoise-fluo`` as is.
``ft-<method>``  self-supervised fine-tune of ``hinet-denoise-fluo`` on the noisy
                 images, ``FinetuneConfig(time_budget_s=budget)``, ssl method
                 ``<method>`` (``--ssl-methods``); validation: the same noisy
                 images' neighbour sub-samples (a noisy view; no clean data).
                 ``sure-known`` is ``sure`` given the TRUE noise parameters
                 (``FinetuneConfig.noise_model``), as BM3D is; plain ``sure``
                 estimates them from each image.
``scratch``      the same self-supervised training of a new HINet of the bundled
                 size (wf 16, depth 4; lr 1e-3).
``oracle``       not a user's method but the ceiling of any of them: a paired
                 fine-tune of ``hinet-denoise-fluo`` on the noisy images AND
                 their clean references (what no user has), same budget.
``n2v``          careamics' Noise2Void (its UNet, patch 64, batch 16, default
                 recipe), trained for the same budget (``max_time``), in its own
                 virtual environment (``--careamics-python``; see
                 ``_careamics_n2v.py``).
``bm3d``         BM3D inside the generalized Anscombe transform with the TRUE
                 noise parameters (``quality.denoise_classical``).

Metric: PSNR (dB, peak 1) and SSIM of outputs clipped to [0, 1], per image and
mean. Seconds: ``train_s`` is the training loop (the budget), ``total_s`` adds
model loading, data preparation and inference on the nine images.

Examples::

    python benchmarks/bench_finetune.py                       # everything, 150 s per training
    python benchmarks/bench_finetune.py --budget 40 --methods ft --ssl-methods neighbor,blind_spot
    python benchmarks/bench_finetune.py --methods input,bundled,bm3d --merge

Output: a markdown table on stdout and JSON (``benchmarks/results/finetune.json``;
``--merge`` adds to / replaces rows of an existing file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import quality  # noqa: E402

from napari_hinet.data import degrade  # noqa: E402
from napari_hinet.training import splits  # noqa: E402
from napari_hinet.training.pool import load_image, percentile_normalize  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "finetune.json"
CAREAMICS_PYTHON = os.environ.get("HINET_CAREAMICS_PYTHON", "/work/venvs/careamics/bin/python")
BASE_MODEL = "hinet-denoise-fluo"
NUCLEI_PLANES = (25, 30, 35, 40, 45)
SEED = 2027
METHODS = ("input", "bundled", "ft", "scratch", "oracle", "n2v", "bm3d")


def bin2(img: np.ndarray) -> np.ndarray:
    """Mean over 2 x 2 pixels (rule 2)."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def clean_images(pool: Path, binning: int = 1) -> dict[str, np.ndarray]:
    """The clean test images, float32 (H, W) in [0, 1] (rules 1-2): nine of 256 x 256,
    or with ``binning=2`` one of 256 x 256 and five of 128 x 128."""
    out: dict[str, np.ndarray] = {}
    for rel in splits.TEST_MICROSCOPY:
        img = load_image(pool / rel)
        if binning == 2:
            img = np.stack([bin2(p) for p in img]) if img.ndim == 3 else bin2(img)
            if img.ndim == 2:
                out[f"{Path(rel).stem}/2"] = np.clip(percentile_normalize(img), 0, 1).astype(np.float32)[
                    :256, :256
                ]
                continue
        if img.ndim == 3:
            planes = {f"{Path(rel).stem}#{i}": img[i] for i in NUCLEI_PLANES}
        else:
            h, w = img.shape[0] // 2, img.shape[1] // 2
            planes = {
                f"{Path(rel).stem}@{r},{c}": img[r * h : (r + 1) * h, c * w : (c + 1) * w]
                for r in range(2)
                for c in range(2)
            }
        for name, plane in planes.items():
            out[name] = np.clip(percentile_normalize(plane), 0, 1).astype(np.float32)[:256, :256]
    return out


def noisy_images(clean: dict[str, np.ndarray], photons: float) -> dict[str, np.ndarray]:
    """Rule 3: Poisson-Gaussian noise with fixed seeds."""
    read = quality.PG_READ_FRACTION * photons
    return {
        name: degrade.poisson_gaussian(img, photons, read, [SEED, int(photons), i]).astype(np.float32)
        for i, (name, img) in enumerate(clean.items())
    }


def restore_all(model, noisy: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our engine on every image, with the model's own normalization."""
    from napari_hinet import Restorer

    restorer = Restorer(model, compile="off")
    norm = restorer.metadata.get("normalization", "percentile")
    return {
        k: np.asarray(restorer.restore(v, axes="YX", normalization=norm, out_dtype="float32"), np.float32)
        for k, v in noisy.items()
    }


def train_ours(
    base,
    noisy: dict[str, np.ndarray],
    budget: float,
    args,
    ssl_method: str,
    work: Path,
    photons: float,
    clean: dict[str, np.ndarray] | None = None,
):
    """Self-supervised training for ``budget`` seconds (``clean`` given: the paired
    oracle); returns (outputs, info)."""
    from napari_hinet.training import FinetuneConfig, finetune

    images = list(noisy.values())
    known = ssl_method == "sure-known"
    read = quality.PG_READ_FRACTION * photons
    cfg = FinetuneConfig(
        time_budget_s=budget,
        num_threads=args.threads,
        ssl_method="sure" if known else ssl_method,
        noise_model=(1.0 / photons, (read / photons) ** 2) if known else None,
        batch_size=8,
        patch_size=64,
        lr=args.lr if base is not None else 1e-3,
        precision=args.precision,
        val_every=50,
        seed=0,
        normalization="percentile",
    )
    path = work / f"{'ft' if base else 'scratch'}-{ssl_method}.safetensors"
    t0 = time.perf_counter()
    if clean is not None:
        targets = [clean[k] for k in noisy]
        result = finetune(
            base,
            mode="paired",
            inputs=images,
            targets=targets,
            val_inputs=images,
            val_targets=targets,
            config=cfg,
            save_path=path,
        )
    else:
        result = finetune(
            base, mode="self_supervised", inputs=images, val_inputs=images, config=cfg, save_path=path
        )
    outputs = restore_all(str(path), noisy)
    info = {
        "train_s": round(result.wall_time_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "steps": result.steps,
        "ssl_method": ssl_method if clean is None else None,
        "val_psnr_start": result.val_psnr_start,
        "val_psnr": result.val_psnr,
        "val_reference": result.val_reference,
        "lr": cfg.lr,
        "precision": cfg.precision,
    }
    return outputs, info


def run_n2v(noisy: dict[str, np.ndarray], budget: float, threads: int, python: str, work: Path):
    stack = np.stack(list(noisy.values()))
    src, dst = work / "n2v_noisy.npy", work / "n2v_out.npy"
    np.save(src, stack)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            python,
            str(REPO / "benchmarks" / "_careamics_n2v.py"),
            str(src),
            str(dst),
            str(budget),
            str(threads),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"careamics N2V failed:\n{proc.stderr[-3000:]}")
    out = np.load(dst)
    info = json.loads(dst.with_suffix(".json").read_text())
    info["total_s"] = round(time.perf_counter() - t0, 1)
    return dict(zip(noisy, out, strict=True)), info


def run_bm3d(noisy: dict[str, np.ndarray], clean: dict[str, np.ndarray], photons: float):
    truth = {"photons": photons, "read_sigma": quality.PG_READ_FRACTION * photons}
    t0 = time.perf_counter()
    out = {
        k: quality.denoise_classical("bm3d", quality.Sample(k, 0, clean[k][..., None], v[..., None], truth))[
            ..., 0
        ]
        for k, v in noisy.items()
    }
    return out, {"total_s": round(time.perf_counter() - t0, 1)}


def reference_noise(clean: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean noise variance that ``estimate_noise_model`` finds in each *clean* reference
    (their own camera noise, which every method is scored against as if it were signal)."""
    from napari_hinet.training.noise_model import variance_map

    return {k: round(float(variance_map(v[..., None]).mean()), 6) for k, v in clean.items()}


def noise_estimate_check(noisy: dict[str, np.ndarray], clean: dict[str, np.ndarray], photons: float):
    """Per image: the mean noise variance ``estimate_noise_model`` finds in the noisy image
    (percentile-normalised, as ``finetune`` sees it) over the variance really there (the
    added Poisson-Gaussian noise plus the reference's own, :func:`reference_noise`)."""
    from napari_hinet.engine.intensity import DEFAULT_PERCENTILES, percentile_mapping
    from napari_hinet.training.noise_model import variance_map

    read = quality.PG_READ_FRACTION * photons
    out = {}
    for k, y in noisy.items():
        m = percentile_mapping(y, DEFAULT_PERCENTILES)
        scale = m.high - m.low
        estimated = variance_map(m.forward(y)[..., None]).mean()
        added = (np.clip(clean[k], 0, None) / photons + (read / photons) ** 2).mean()
        own = variance_map(clean[k][..., None]).mean()
        out[k] = round(float(estimated * scale**2 / (added + own)), 3)
    return out


def score(outputs: dict[str, np.ndarray], clean: dict[str, np.ndarray]) -> dict:
    per = {k: quality.metrics(outputs[k][..., None], clean[k][..., None]) for k in clean}
    return {
        "psnr": round(float(np.mean([p for p, _ in per.values()])), 3),
        "ssim": round(float(np.mean([s for _, s in per.values()])), 4),
        "per_image_psnr": {k: round(p, 3) for k, (p, _) in per.items()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=Path, default=quality.DEFAULT_POOL)
    p.add_argument("--photons", default="20,100", help="photon levels (comma-separated)")
    p.add_argument("--budget", type=float, default=150.0, help="training seconds per trained method")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--binning", type=int, choices=(1, 2), default=1, help="rule 2: 2 = 2x2-binned references")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument(
        "--ssl-methods", default="", help="ssl methods of ft/scratch (default: the config default)"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate of ft (default: the config default; scratch: 1e-3)",
    )
    p.add_argument("--precision", default="fp32", help="precision of ft/scratch (fp32 = the CPU default)")
    p.add_argument("--careamics-python", default=CAREAMICS_PYTHON)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--merge", action="store_true", help="add to (replace matching rows of) --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from napari_hinet.training import FinetuneConfig

    args = parse_args(argv)
    if args.lr is None:
        args.lr = FinetuneConfig().lr
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    ssl_methods = [m for m in args.ssl_methods.split(",") if m] or [FinetuneConfig().ssl_method]
    clean = clean_images(args.pool, args.binning)
    rows: list[dict] = []
    estimates: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for photons in [float(x) for x in args.photons.split(",")]:
            noisy = noisy_images(clean, photons)
            estimates[f"{photons:g}"] = noise_estimate_check(noisy, clean, photons)
            for method in methods:
                variants = ssl_methods if method in ("ft", "scratch") else [None]
                for ssl in variants:
                    name = f"{method}-{ssl}" if ssl else method
                    load = [round(x, 2) for x in os.getloadavg()]
                    if method == "input":
                        outputs, info = noisy, {}
                    elif method == "bundled":
                        t0 = time.perf_counter()
                        outputs = restore_all(BASE_MODEL, noisy)
                        info = {"total_s": round(time.perf_counter() - t0, 1)}
                    elif method in ("ft", "scratch"):
                        base = BASE_MODEL if method == "ft" else None
                        outputs, info = train_ours(base, noisy, args.budget, args, ssl, work, photons)
                    elif method == "oracle":
                        outputs, info = train_ours(
                            BASE_MODEL, noisy, args.budget, args, "neighbor", work, photons, clean
                        )
                    elif method == "n2v":
                        outputs, info = run_n2v(noisy, args.budget, args.threads, args.careamics_python, work)
                    else:
                        outputs, info = run_bm3d(noisy, clean, photons)
                    row = {"photons": photons, "method": name, **score(outputs, clean), **info}
                    row["load_before"] = load
                    if method in ("ft", "scratch", "n2v"):
                        row["budget_s"] = args.budget
                    rows.append(row)
                    extra = (
                        f" ({info.get('steps')} steps, {info.get('train_s')} s)" if "steps" in info else ""
                    )
                    print(
                        f"{photons:5.0f} photons  {name:22s} {row['psnr']:6.2f} dB  {row['ssim']:.3f}{extra}",
                        flush=True,
                    )
    if args.merge and args.out.exists():
        old = json.loads(args.out.read_text())
        keys = {(r["photons"], r["method"]) for r in rows}
        rows = [r for r in old["rows"] if (r["photons"], r["method"]) not in keys] + rows
    rows.sort(key=lambda r: (r["photons"], r["method"]))
    report = {
        "benchmark": "bench_finetune",
        "settings": {
            "images": sorted(clean),
            "read_fraction": quality.PG_READ_FRACTION,
            "threads": args.threads,
            "budget_s": args.budget,
            "binning": args.binning,
            "reference_noise": reference_noise(clean),
            "noise_estimate_over_truth": estimates,
            "base_model": BASE_MODEL,
        },
        "machine": quality.machine(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    lines = [
        "| photons | method | PSNR (dB) | SSIM | steps | train s | total s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['photons']:g} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r.get('steps', '')} | "
            f"{r.get('train_s', '')} | {r.get('total_s', '')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
