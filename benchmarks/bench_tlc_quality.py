#!/usr/bin/env python
"""Local statistics (TLC) against tiling and global whole-image inference, on the held-out test set.

For every bundled model (or ``--model``), on exactly the degraded test crops of
``benchmarks/quality.py`` (same images, crops, seeds), PSNR (dB, peak 1,
output clipped to [0, 1]) and seconds per crop of:

* ``tiles P blend``: the engine default (tiles of the training patch ``P``, blended);
* ``whole global``: one forward of the whole crop, global instance-norm statistics;
* ``whole local xS [border]``: one forward, TLC windows of ``S * P`` (scaled per
  U-Net level), border ``clamp`` (paper) or ``shrink``;
* ``tiles T local x1``: tiles of ``T`` pixels (``--large-tile``) with local statistics;
* with ``--level-ablation``: local statistics at some U-Net levels only (global at the others).

Usage:
    python benchmarks/bench_tlc_quality.py [--tasks denoise-photo,...] [--crop 256] [--crops 2]
        [--model NAME_OR_PATH] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import quality
import torch
from _engine_common import load_average, print_table, write_json

from napari_hinet import Restorer
from napari_hinet.model.tlc import hin_blocks, set_statistics


def local_at_levels(model, patch: int, levels: set[int]):
    """A copy of ``model`` with local statistics (x1, clamp) at U-Net ``levels`` only, global elsewhere."""
    local = set_statistics(copy.deepcopy(model), "local", patch)
    plain = set_statistics(copy.deepcopy(model), "global")
    for (level, block), (_, original) in zip(hin_blocks(local), hin_blocks(plain), strict=True):
        if level not in levels:
            block.norm = original.norm
    return local


def variants(model, patch: int, crop: int, large_tile: int, ablation: bool = False) -> dict[str, tuple]:
    """name -> (model, engine options)."""
    out: dict[str, tuple] = {f"tiles {patch} blend": (model, {})}
    out["whole global"] = (model, {"tiling": "none"})
    for scale, border in ((1.0, "clamp"), (1.5, "clamp"), (2.0, "clamp"), (1.0, "shrink")):
        local = set_statistics(copy.deepcopy(model), "local", patch, scale=scale, border=border)
        out[f"whole local x{scale:g} {border}"] = (local, {"tiling": "none"})
    if ablation:  # which U-Net levels lose with local statistics
        depth = int(model.config["depth"])
        for levels in ({0, 1}, set(range(2, depth)), {depth - 1}):
            name = "whole local x1 at levels " + ",".join(map(str, sorted(levels)))
            out[name] = (local_at_levels(model, patch, levels), {"tiling": "none"})
    if large_tile < crop:
        local = set_statistics(copy.deepcopy(model), "local", patch)
        out[f"tiles {large_tile} local x1"] = (local, {"tile": large_tile, "overlap": large_tile // 8})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(quality.TASKS))
    parser.add_argument(
        "--model", action="append", default=[], help="registry name, weights file or runs/<name>/best.pt"
    )
    parser.add_argument("--pool", type=Path, default=quality.DEFAULT_POOL)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--crops", type=int, default=2)
    parser.add_argument("--large-tile", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--level-ablation", action="store_true", help="also local statistics at some U-Net levels only"
    )
    parser.add_argument("--json", help="output path (default benchmarks/results/tlc_quality.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tasks = [t for t in args.tasks.split(",") if t]
    models = quality.ours_models(
        tasks, args.model
    )  # --model: registry name, .safetensors or runs/<name>/best.pt

    rows = []
    for task in tasks:
        base = models[task]
        patch = int(base.metadata.get("patch_size") or 256)
        runners = {
            name: (Restorer(m, device="cpu", precision="fp32", compile="off"), opts)
            for name, (m, opts) in variants(
                base, patch, args.crop, args.large_tile, args.level_ablation
            ).items()
        }
        for condition in quality.TASKS[task].conditions:
            samples = quality.make_samples(args.pool, task, condition, args.crop, args.crops)
            for name, (r, opts) in runners.items():
                psnrs, secs = [], []
                for s in samples:
                    quality.OURS_OPTIONS.clear()
                    quality.OURS_OPTIONS.update(opts)
                    t0 = time.perf_counter()
                    out = quality.run_ours(r, s)
                    secs.append(time.perf_counter() - t0)
                    psnrs.append(quality.metrics(out, s.clean)[0])
                rows.append(
                    {
                        "model": base.metadata.get("name"),
                        "patch": patch,
                        "task": task,
                        "condition": condition,
                        "path": name,
                        "psnr_db": round(float(np.mean(psnrs)), 2),
                        "s_per_crop": round(statistics.median(secs), 3),
                        "n": len(samples),
                    }
                )
                print(rows[-1], flush=True)
    quality.OURS_OPTIONS.clear()
    print(
        f"\nCrops {args.crop}x{args.crop} ({args.crops} per test image), fp32, "
        f"{args.threads} threads, load now {load_average()}"
    )
    print_table(rows, ["model", "patch", "task", "condition", "path", "psnr_db", "s_per_crop", "n"])
    write_json(
        "tlc_quality",
        {
            "crop": args.crop,
            "crops": args.crops,
            "models": {t: m.metadata.get("sha256") for t, m in models.items()},
            "rows": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
