"""``napari-hinet train``: fine-tune or train a model from the command line.

The main CLI (``napari_hinet.cli``) hooks this in with :func:`add_train_parser`
and :func:`run_train`; ``python -m napari_hinet.training.cli`` runs it alone.

Settings come from flags and/or a YAML file (``--config``); flags win. YAML keys
are the flag names with underscores, e.g.::

    mode: paired
    base_model: hinet-denoise-fluo
    inputs: data/noisy
    targets: data/clean
    degradation: {kind: poisson_gaussian, photons: [5, 100]}   # synthetic mode
    train: {steps: 2000, batch_size: 8, patch_size: 64, lr: 0.0001}
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["add_train_parser", "build_parser", "main", "run_train"]

_TRAIN_FLAGS = {
    # flag: (type, help)
    "steps": (int, "number of optimizer steps (default 500)"),
    "batch_size": (int, "patches per step (default 8)"),
    "patch_size": (int, "patch side in pixels, a multiple of 2**(depth-1) (default 64)"),
    "lr": (float, "peak learning rate (default 1e-4)"),
    "lr_min": (float, "final learning rate of the cosine decay (default 1e-6)"),
    "warmup_steps": (int, "linear warm-up steps (default 20)"),
    "loss": (str, "psnr or l1 (default psnr)"),
    "grad_clip": (float, "max gradient norm; 0 disables (default 0.01, as the official recipe)"),
    "seed": (int, "random seed (default 0)"),
    "val_every": (int, "validate every N steps (default 50)"),
    "checkpoint_every": (int, "checkpoint every N steps (default 50)"),
    "precision": (str, "auto, fp32, bf16 or fp16 (CUDA) (default auto)"),
    "device": (str, "cpu, cuda, cuda:1 ... (default cpu)"),
    "num_threads": (int, "torch CPU threads"),
    "normalization": (str, "fixed or percentile (default: the base model's)"),
    "channel_rule": (str, "replicate (gray data, RGB model) or gray (RGB data, gray model)"),
    "val_fraction": (float, "share held out for validation when no validation data is given (0.2)"),
    "val_count": (int, "number of validation patches (16)"),
    "val_patch": (int, "validation patch side (default 2 x patch size)"),
    "run_dir": (str, "folder for checkpoints and train.log (default ./runs/<name>)"),
    "name": (str, "name of the saved model"),
    "task": (str, "denoise, deblur or derain (for a new model)"),
    "time_budget_s": (
        float,
        "wall-clock seconds of training; the schedule is fitted to it (replaces --steps)",
    ),
    "ssl_method": (str, "self_supervised: neighbor, neighbor_reg, blind_spot or sure (default neighbor)"),
    "noise_model": (
        float,
        "ssl_method sure: noise variance a*x + b of a pixel of clean value x, in the data's units "
        "(camera: gain, read_noise**2 - gain*offset; default: estimated from each image)",
    ),
}
#: Flags whose name differs from the FinetuneConfig field.
_FLAG_NAMES = {"time_budget_s": "--time-budget"}
#: Flags that take several values, and their names in the help.
_FLAG_METAVARS = {"time_budget_s": "SECONDS", "noise_model": ("A", "B")}


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune a model (or train a new one) on your images",
        description="Fine-tune a HINet model on paired, Noise2Noise, noisy-only or clean (synthetic) data.",
    )
    _add_arguments(p)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with any of these settings (flags override it)")
    p.add_argument("--mode", choices=["synthetic", "paired", "n2n", "self_supervised"])
    p.add_argument("--base-model", help="registry name or weights file to start from (default: a new model)")
    p.add_argument("--clean", help="synthetic mode: folder/file of clean images")
    p.add_argument("--inputs", help="paired: degraded; n2n: acquisition 1; self_supervised: noisy images")
    p.add_argument("--targets", help="paired: clean; n2n: acquisition 2 (matched by file name)")
    p.add_argument("--val-inputs", help="validation inputs (folder/file)")
    p.add_argument("--val-targets", help="validation targets (folder/file)")
    p.add_argument("--val-clean", help="synthetic mode: clean validation images")
    p.add_argument("--degradation", help="synthetic mode: gaussian, poisson_gaussian, motion_blur or rain")
    p.add_argument(
        "--sigma", type=float, nargs=2, metavar=("LO", "HI"), help="gaussian: sigma range (0..255 scale)"
    )
    p.add_argument(
        "--photons", type=float, nargs=2, metavar=("LO", "HI"), help="poisson_gaussian: photons range"
    )
    p.add_argument(
        "--read-fraction", type=float, nargs=2, metavar=("LO", "HI"), help="poisson_gaussian: read noise"
    )
    p.add_argument("--rain-modes", nargs="+", choices=["light", "heavy"], help="rain: modes to draw from")
    p.add_argument("--wf", type=int, help="new model: width (default 16)")
    p.add_argument("--depth", type=int, help="new model: depth (default 4)")
    p.add_argument("--output", help="where to save the model (default: the user models folder)")
    p.add_argument("--no-resume", action="store_true", help="start over even if run_dir holds a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, (typ, help_) in _TRAIN_FLAGS.items():
        name = _FLAG_NAMES.get(flag, "--" + flag.replace("_", "-"))
        metavar = _FLAG_METAVARS.get(flag)
        nargs = len(metavar) if isinstance(metavar, tuple) else None
        p.add_argument(name, dest=flag, type=typ, nargs=nargs, metavar=metavar, help=help_)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-hinet")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    return parser


def _merge(args: argparse.Namespace) -> dict[str, Any]:
    """YAML settings overridden by the flags that were given."""
    import yaml

    settings: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings at the top level")
        settings = dict(loaded)
    train = dict(settings.pop("train", {}) or {})
    for key in list(settings):
        if key in _TRAIN_FLAGS or key in ("wf", "depth"):
            train[key] = settings.pop(key)
    for key in (
        "mode",
        "base_model",
        "clean",
        "inputs",
        "targets",
        "val_inputs",
        "val_targets",
        "val_clean",
        "output",
    ):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    for key in _TRAIN_FLAGS:
        value = getattr(args, key)
        if value is not None:
            train[key] = value
    deg = settings.get("degradation")
    deg = {"kind": deg} if isinstance(deg, str) else dict(deg or {})
    if args.degradation:
        deg["kind"] = args.degradation
    for flag, key in (("sigma", "sigma_255"), ("photons", "photons"), ("read_fraction", "read_fraction")):
        if getattr(args, flag) is not None:
            deg[key] = list(getattr(args, flag))
    if args.rain_modes:
        deg["rain_modes"] = list(args.rain_modes)
    settings["degradation"] = deg or None
    model = dict(train.pop("model", {}) or {})
    for key in ("wf", "depth"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
        elif key in train:
            model[key] = train.pop(key)
    if model:
        train["model"] = {"wf": 16, "depth": 4, **model}
    if train.get("grad_clip") == 0:
        train["grad_clip"] = None
    if args.no_resume:
        train["resume"] = False
    settings["train"] = train
    return settings


def run_train(args: argparse.Namespace) -> int:
    """Run ``napari-hinet train``; returns the exit status (the table in :mod:`napari_hinet.cli`:
    0 saved, 1 diverged, 2 bad input or unusable run state, 130 Ctrl-C, 143 SIGTERM)."""
    from .engine import TrainingDiverged
    from .finetune import FinetuneConfig, FinetuneJob

    try:
        s = _merge(args)
        mode = s.get("mode") or "synthetic"
        train = s["train"]
        known = {f.name for f in fields(FinetuneConfig)}
        unknown = sorted(set(train) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        name = train.get("name")
        if not train.get("run_dir"):
            stem = name or f"{mode}-{(Path(s['base_model']).stem if s.get('base_model') else 'new')}"
            train["run_dir"] = str(Path("runs") / stem)
        cfg = FinetuneConfig(**train)
        job = FinetuneJob(
            s.get("base_model"),
            mode=mode,
            clean=s.get("clean"),
            inputs=s.get("inputs"),
            targets=s.get("targets"),
            degradation=s.get("degradation"),
            val_inputs=s.get("val_inputs"),
            val_targets=s.get("val_targets"),
            val_clean=s.get("val_clean"),
            config=cfg,
        )
    except (ValueError, LookupError, FileNotFoundError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"napari-hinet train: error: {text}", file=sys.stderr)
        return 2
    log = Path(cfg.run_dir) / "train.log"
    print(f"training {job.base_name} in mode {mode}; log: {log}", file=sys.stderr)
    if job.resumed:
        print(f"resumed at step {job.steps_done} from {cfg.run_dir}/last.pt", file=sys.stderr)
    bar = None
    print(f"validation PSNR is measured against: {job.val_reference}", file=sys.stderr)
    if cfg.time_budget_s is not None:
        print(
            f"time budget {cfg.time_budget_s:g} s: the number of steps is fitted after the first steps",
            file=sys.stderr,
        )
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=job.trainer.cfg.steps, initial=job.steps_done, unit="step", dynamic_ncols=True)
    psnr_key = "val_psnr" if job.val_reference == "clean" else "val_psnr_vs_noisy"
    try:
        for ev in job.run():
            if bar is not None:
                if bar.total != ev.total:
                    bar.total = ev.total
                post = {"loss": f"{ev.loss:.4f}"}
                if ev.best_psnr is not None:
                    post[psnr_key] = f"{ev.best_psnr:.2f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
    except TrainingDiverged as exc:
        print(f"napari-hinet train: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into Terminated by napari_hinet.cli
        from ..cli import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

        job.trainer.save_checkpoint()
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{what}; resume with the same command (checkpoint in {cfg.run_dir})", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
    path = job.save(s.get("output"))
    start, best = job.trainer.start_psnr, job.trainer.best_psnr
    summary = f"saved {path}: {job.steps_done} steps, {job.trainer.wall_time_s:.0f} s"
    if job.budget_plan is not None:
        summary += f" (time budget {cfg.time_budget_s:g} s)"
    if start is not None and best is not None:
        summary += f", validation PSNR {start:.2f} -> {best:.2f} dB (against: {job.val_reference})"
    print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_train(args)


if __name__ == "__main__":
    raise SystemExit(main())
