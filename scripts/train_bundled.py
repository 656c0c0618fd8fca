#!/usr/bin/env python
"""Train (or resume) the bundled models from configs/bundled/*.yaml and export them.

Reproducible recipe:

    bash get_training_pool.sh /work/pool/training_pool     # the data (docs/finetuning.md)
    python scripts/train_bundled.py --pool /work/pool/training_pool \
        hinet-denoise-fluo hinet-denoise-photo hinet-deblur-photo hinet-derain-photo

Each model trains in ``runs/<name>/`` (``train.log``, ``last.pt`` = resumable
state written atomically every ``checkpoint_every`` steps, ``best.pt`` = best
validation weights). Running the same command again resumes from ``last.pt``.
``--max-minutes`` stops a run cleanly (checkpointed) after that wall time;
``--export`` writes ``src/napari_hinet/weights/<name>.safetensors`` (fp16, with
metadata) from the best-by-validation weights, also for an unfinished run.
The pool is preprocessed once into ``runs/cache/`` (see training/pool.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_hinet.model import HINet  # noqa: E402
from napari_hinet.training import splits  # noqa: E402
from napari_hinet.training.datasets import Degradation, MixtureSource, SyntheticSource, fixed_set  # noqa: E402
from napari_hinet.training.engine import TrainConfig, Trainer  # noqa: E402
from napari_hinet.training.export import export_model, hardware_summary  # noqa: E402
from napari_hinet.training.pool import build_cache, load_cache  # noqa: E402


def to_gray(rgb_uint8: np.ndarray) -> np.ndarray:
    """Luminance (Rec. 601 weights) of an RGB uint8 image, float32 (H, W, 1) in [0, 1]."""
    w = np.array([0.299, 0.587, 0.114], np.float32)
    return (rgb_uint8.astype(np.float32) @ w / 255.0)[..., None]


def build_sources(cfg: dict, cache: Path):
    """(training source, validation source) of one bundled config."""
    data, deg = cfg["data"], Degradation(**cfg["degradation"])
    nat_train = list(load_cache(cache, "natural_train").values())
    nat_val = list(load_cache(cache, "natural_val").values())
    if data.get("natural_as_gray"):
        nat_train = [to_gray(a) for a in nat_train]
        nat_val = [to_gray(a) for a in nat_val]
    train = SyntheticSource(nat_train, deg)
    val = SyntheticSource(nat_val, deg)
    if data.get("microscopy"):
        w = float(data.get("microscopy_weight", 0.35))
        micro_train = list(load_cache(cache, "micro_train").values())
        micro_val = list(load_cache(cache, "micro_val").values())
        train = MixtureSource([train, SyntheticSource(micro_train, deg)], [1 - w, w])
        val = MixtureSource([val, SyntheticSource(micro_val, deg)], [0.5, 0.5])
    return train, val


def load_config(name: str) -> dict:
    path = REPO / "configs" / "bundled" / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"no config {path}; available: {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return yaml.safe_load(path.read_text())


def run_one(name: str, args: argparse.Namespace) -> None:
    cfg = load_config(name)
    tcfg = TrainConfig(**cfg["train"])
    if args.steps:
        tcfg.steps = args.steps
    run_dir = Path(args.runs) / name
    cache = Path(args.runs) / "cache"
    build_cache(args.pool, cache)
    train_src, val_src = build_sources(cfg, cache)
    vcfg = cfg.get("validation", {"count": 32, "patch": 96})
    val = fixed_set(val_src, tcfg.seed, int(vcfg["count"]), int(vcfg["patch"]))
    torch.manual_seed(tcfg.seed)
    model = HINet(**cfg["model"])
    trainer = Trainer(model, train_src, val, tcfg, run_dir, extra_state={"bundled_config": cfg})
    trainer.try_resume()
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes else None
    if not args.export_only:
        trainer.log(f"session start, hardware: {hardware_summary(tcfg)}")
        last_print = time.monotonic()
        for ev in trainer.run(should_stop=lambda: deadline is not None and time.monotonic() > deadline):
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
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    if args.export or args.export_only:
        out = Path(args.weights_dir) / f"{name}.safetensors"
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
            extra_metrics={
                "val_set": f"{vcfg['count']} fixed {vcfg['patch']}px crops of the validation images"
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
    p.add_argument("--export", action="store_true", help="export the best weights after training")
    p.add_argument("--export-only", action="store_true", help="do not train; export from runs/<name>/")
    args = p.parse_args(argv)
    for name in args.names:
        run_one(name, args)
    print(f"platform: {platform.platform()}", flush=True)


if __name__ == "__main__":
    main()
