#!/usr/bin/env python
"""Training throughput (patches per second) of HINet, and bf16-vs-fp32 agreement.

Usage:
    python benchmarks/bench_training.py                       # CPU: wf 16 and 64, fp32 and bf16
    python benchmarks/bench_training.py --device cuda --precisions fp32 bf16 fp16
    python benchmarks/bench_training.py --json out.json --threads 2 --steps 10

Each row times ``--steps`` optimizer steps (after ``--warmup`` untimed ones) of
the real training step (:meth:`napari_hinet.training.Trainer.train_step`: batch
synthesis, forward, PSNR loss on both outputs, backward, clipping, Adam) on
synthetic Gaussian-noise patches, and reports patches/second. ``agree_db`` is
the PSNR between the model's fp32 output and its output under the given
precision on the same batch (higher = closer; fp32 rows show inf).

``benchmarks/gpu_check.py`` can call :func:`measure` / :func:`run_table`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_hinet.model import HINet  # noqa: E402
from napari_hinet.training.datasets import Degradation, SyntheticSource  # noqa: E402
from napari_hinet.training.engine import TrainConfig, Trainer  # noqa: E402


def _images(channels: int = 3, n: int = 2, size: int = 256) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    from scipy import ndimage

    out = []
    for _ in range(n):
        im = ndimage.gaussian_filter(rng.random((size, size, channels)), sigma=(2, 2, 0))
        out.append(((im - im.min()) / (im.max() - im.min())).astype(np.float32))
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def _agreement_db(model: torch.nn.Module, precision: str, device: str, batch: int, patch: int) -> float:
    """PSNR (dB) between fp32 and ``precision`` outputs of ``model`` on one batch."""
    if precision == "fp32":
        return float("inf")
    torch.manual_seed(1)
    x = torch.rand(batch, model.config["in_chn"], patch, patch, device=device)
    model.eval()
    ref = model(x)[-1].float()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(torch.device(device).type, dtype=dtype):
        out = model(x)[-1].float()
    model.train()
    mse = float(((out - ref) ** 2).mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-20)))


def measure(
    wf: int = 16,
    depth: int = 4,
    precision: str = "fp32",
    device: str = "cpu",
    batch: int = 16,
    patch: int = 64,
    steps: int = 10,
    warmup: int = 2,
    channels: int = 3,
    weights: str | None = None,
) -> dict:
    """Time ``steps`` training steps; returns a dict with ``patches_per_s`` and settings.

    ``weights`` (a registry name or file) starts from a trained model instead of a
    random one; ``agree_db`` is only meaningful for trained weights.
    """
    torch.manual_seed(0)
    if weights:
        from napari_hinet.checkpoints import load_model

        model = load_model(weights).float().train()
        wf, depth, channels = model.config["wf"], model.config["depth"], model.config["in_chn"]
    else:
        model = HINet(channels, wf=wf, depth=depth)
    cfg = TrainConfig(
        steps=steps + warmup, batch_size=batch, patch_size=patch, precision=precision, device=device, lr=1e-4
    )
    trainer = Trainer(model, SyntheticSource(_images(channels), Degradation("gaussian")), None, cfg)
    for _ in range(warmup):
        trainer.train_step()
    _sync(device)
    t0 = time.perf_counter()
    losses = [trainer.train_step() for _ in range(steps)]
    _sync(device)
    seconds = time.perf_counter() - t0
    return {
        "wf": wf,
        "depth": depth,
        "precision": trainer.precision,
        "device": device,
        "batch": batch,
        "patch": patch,
        "steps": steps,
        "seconds": round(seconds, 3),
        "s_per_step": round(seconds / steps, 4),
        "patches_per_s": round(steps * batch / seconds, 2),
        "final_loss": round(losses[-1], 4),
        "agree_db": round(_agreement_db(trainer.model, trainer.precision, device, 4, patch), 2),
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "weights": weights or "random init",
    }


def run_table(
    widths=(16, 64),
    precisions=("fp32", "bf16"),
    device="cpu",
    depth=4,
    batch=16,
    patch=64,
    steps=10,
    warmup=2,
    weights: str | None = None,
) -> list[dict]:
    """:func:`measure` for every width x precision; prints a table as it goes."""
    rows = []
    print(
        f"{'wf':>4} {'depth':>5} {'precision':>9} {'batch':>5} {'patch':>5} {'s/step':>8} {'patches/s':>10} {'agree dB':>9}"
    )
    for wf in widths:
        for prec in precisions:
            r = measure(wf, depth, prec, device, batch, patch, steps, warmup, weights=weights)
            rows.append(r)
            print(
                f"{r['wf']:>4} {r['depth']:>5} {r['precision']:>9} {batch:>5} {patch:>5} {r['s_per_step']:>8.3f} "
                f"{r['patches_per_s']:>10.1f} {r['agree_db']:>9.1f}",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--weights", default=None, help="start from these trained weights (name or file)")
    p.add_argument("--json", default=None, help="write the rows and machine info here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {load}")
    widths = [0] if a.weights else a.widths  # the weights fix the width
    rows = run_table(widths, a.precisions, a.device, a.depth, a.batch, a.patch, a.steps, a.warmup, a.weights)
    if a.json:
        info = {
            "machine": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_before": load,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "gpu": torch.cuda.get_device_name() if a.device.startswith("cuda") else None,
        }
        Path(a.json).write_text(json.dumps({"info": info, "rows": rows}, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
