#!/usr/bin/env python
"""Plot validation PSNR (and the loss) against steps from training run folders.

Reads the history that :class:`napari_hinet.training.engine.Trainer` keeps in
``runs/<name>/last.pt`` (loaded with ``weights_only=True``) and writes
``docs/images/training_<name><suffix>.png``::

    python scripts/plot_training_curves.py hinet-denoise-photo hinet-denoise-fluo
    python scripts/plot_training_curves.py hinet-deblur-photo --suffix _phase8

(a warm-started phase has a run folder of its own, so its figure gets a suffix and
the figures of the earlier phases stay as they are).

Phase boundaries come from the model's config (``configs/bundled/<name>.yaml``:
``train.restarts``) and are drawn as dashed lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def plot(name: str, runs: Path, out_dir: Path, suffix: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = torch.load(runs / name / "last.pt", map_location="cpu", weights_only=True)
    hist = state["history"]
    cfg = yaml.safe_load((REPO / "configs" / "bundled" / f"{name}.yaml").read_text())
    fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_val.plot(hist["val_steps"], hist["val_psnr"], "o-", color="C0")
    ax_val.set_xlabel("step (this run folder)")
    ax_val.set_ylabel("validation PSNR (dB, clean targets)")
    ax_val.grid(alpha=0.3)
    steps, losses = np.asarray(hist["steps"]), np.asarray(hist["losses"])
    if len(losses) > 50:  # a running mean over 50 steps
        kernel = np.ones(50) / 50
        ax_loss.plot(steps[49:], np.convolve(losses, kernel, mode="valid"), color="C1")
    else:
        ax_loss.plot(steps, losses, color="C1")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"training loss ({cfg['train']['loss']}, mean of 50 steps)")
    ax_loss.grid(alpha=0.3)
    for r in cfg["train"].get("restarts", []):
        for ax in (ax_val, ax_loss):
            ax.axvline(r, ls="--", color="gray", lw=1)
    best = max(hist["val_psnr"])
    fig.suptitle(f"{name}: {state['step']} steps in this run folder, best validation {best:.2f} dB")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"training_{name}{suffix}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="bundled model names (run folders in --runs)")
    p.add_argument("--runs", type=Path, default=REPO / "runs")
    p.add_argument("--out-dir", type=Path, default=REPO / "docs" / "images")
    p.add_argument("--suffix", default="", help="appended to the file name, e.g. _phase8")
    args = p.parse_args(argv)
    for name in args.names:
        print(plot(name, args.runs, args.out_dir, args.suffix))


if __name__ == "__main__":
    main()
