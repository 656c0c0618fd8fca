#!/usr/bin/env python
"""Tile overlap (and tile size) against quality and work, on the held-out test set of ``quality.py``.

For each bundled model (or ``--model``), on exactly the degraded test crops of
``benchmarks/quality.py`` (same images, crops, seeds), the engine's blended
tiles of the model's patch size (or of each ``--tiles`` size) are run with
several minimum overlaps. Printed per tile and overlap: PSNR (dB, peak 1,
output clipped), its difference to the first row of the condition
(``delta_db``: the first tile with the quarter overlap ``tile // 4``, the
default before 0.2, when it is asked; else the largest overlap asked), the overlap the grid actually
gets on the crop (tiles are spread evenly, so it is often larger than asked)
and the work: pixels the network processes per image pixel on a 2048 x 2048
plane.

Pick ``--crop`` so that the grids differ: on 512 crops, 128-pixel tiles get
the same five-tile grid for overlaps 16 and 32 (448 does not).

Usage:
    python benchmarks/bench_overlap.py [--tasks denoise-photo,denoise-fluo] [--crop 448]
        [--model NAME_OR_PATH] [--threads 2] [--overlaps 32 16 8] [--tiles 128 136]
        [--json PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
import quality
import torch
from _engine_common import load_average, print_table, write_json

from napari_hinet import Restorer
from napari_hinet.engine.tiling import plan_grid
from napari_hinet.settings import default_overlap


def work_factor(size: int, tile: int, overlap: int) -> float:
    """Network pixels per image pixel for a ``size`` x ``size`` plane."""
    grid = plan_grid(size, size, "blend", tile, overlap)
    return len(grid.rows) * len(grid.cols) * grid.tile_h * grid.tile_w / size**2


def actual_overlap(size: int, tile: int, overlap: int) -> int:
    """Smallest overlap between neighbouring tiles of the grid on a ``size`` plane."""
    rows = plan_grid(size, size, "blend", tile, overlap).rows
    return min((a + tile - b for a, b in zip(rows, rows[1:], strict=False)), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default="denoise-photo,denoise-fluo")
    parser.add_argument("--model", action="append", default=[], help="registry name or weights file")
    parser.add_argument("--pool", default=quality.DEFAULT_POOL)
    parser.add_argument("--crop", type=int, default=448)
    parser.add_argument("--crops", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--overlaps", type=int, nargs="+", help="minimum overlaps (default: tile/4, the default, tile/8, 0)"
    )
    parser.add_argument("--tiles", type=int, nargs="+", help="tile sizes (default: the model's patch size)")
    parser.add_argument("--json", help="output path (default benchmarks/results/overlap.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tasks = [t for t in args.tasks.split(",") if t]
    models = quality.ours_models(tasks, args.model)

    rows = []
    for task, net in models.items():
        patch = int(net.metadata.get("patch_size") or 256)
        runner = Restorer(net, device="cpu", precision="fp32", compile="off")
        for condition in quality.TASKS[task].conditions:
            samples = quality.make_samples(args.pool, task, condition, args.crop, args.crops)
            reference = None
            for tile in args.tiles or [patch]:
                overlaps = args.overlaps or [tile // 4, default_overlap(tile), tile // 8, 0]
                overlaps = sorted(set(overlaps), key=lambda o: (o != tile // 4, -o))  # the quarter first
                for overlap in overlaps:
                    quality.OURS_OPTIONS.clear()
                    quality.OURS_OPTIONS.update({"tile": tile, "overlap": overlap})
                    value = float(
                        np.mean([quality.metrics(quality.run_ours(runner, s), s.clean)[0] for s in samples])
                    )
                    reference = value if reference is None else reference
                    rows.append(
                        {
                            "task": task,
                            "condition": condition,
                            "tile": tile,
                            "overlap": overlap,
                            "default": "yes" if (tile, overlap) == (patch, default_overlap(patch)) else "",
                            "actual_on_crop": actual_overlap(args.crop, tile, overlap),
                            "psnr_db": round(value, 3),
                            "delta_db": round(value - reference, 3),
                            "work_2048": round(work_factor(2048, tile, overlap), 3),
                        }
                    )
                    print(rows[-1], flush=True)
    quality.OURS_OPTIONS.clear()
    print(
        f"\nCrops {args.crop}x{args.crop} ({args.crops} per test image), fp32, {args.threads} threads, load {load_average()}"
    )
    columns = [
        "task",
        "condition",
        "tile",
        "overlap",
        "default",
        "actual_on_crop",
        "psnr_db",
        "delta_db",
        "work_2048",
    ]
    print_table(rows, columns)
    write_json(
        "overlap",
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
