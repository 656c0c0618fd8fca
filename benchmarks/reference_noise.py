#!/usr/bin/env python
"""How clean are the "clean" test references? Our model applied to the reference itself.

A blind denoiser removes all the noise it sees, the camera noise already in a
microscopy reference included; BM3D with the true synthetic noise level removes
only the synthetic part. Against a reference that carries its own noise our
PSNR is therefore capped, and this script measures the cap, per test crop of
``benchmarks/quality.py`` (same crops, same model loading):

1. ``ceiling``: PSNR of ``ours(reference)`` against the reference, the highest
   PSNR our model can reach on that crop (no synthetic noise at all);
2. ``sigma``: the reference's own noise, Donoho's wavelet estimate (median
   absolute finest Haar diagonal coefficient / 0.6745), in units of the crop's
   [0, 1] range (edges inflate it a little on textured photos);
3. ``hf_kept``: the share of the reference's high-frequency energy (std of the
   Laplacian) that ``ours(reference)`` keeps: 1 = untouched, 0 = flattened;
4. from ``--results`` (a ``quality.py`` JSON) the rows ``ours`` and ``bm3d`` of each
   condition, to put the ceiling beside the gap.

Prints a table per crop and the means per subset (microscopy / textured / smooth)
and writes JSON::

    python benchmarks/reference_noise.py --task denoise-fluo   # -> results/reference_noise_denoise-fluo.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import quality as q  # the benchmark whose test crops and model loading this reuses
from _engine_common import write_json


def haar_sigma(plane: np.ndarray) -> float:
    """Noise std of a 2-D plane: median |finest Haar diagonal coefficient| / 0.6745 (Donoho)."""
    p = plane[: plane.shape[0] // 2 * 2, : plane.shape[1] // 2 * 2].astype(np.float64)
    diag = (p[0::2, 0::2] - p[0::2, 1::2] - p[1::2, 0::2] + p[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(diag)) / 0.6745)


def measure(restorer, task: str, pool: Path, crop: int, crops: int) -> list[dict]:
    """One row per test crop: ceiling PSNR, the reference's sigma and the kept high frequencies."""
    from scipy import ndimage

    rows = []
    # quality.py's own test crops (those of its first condition; the clean crops are the same for all)
    for s in q.make_samples(pool, task, q.TASKS[task].conditions[0], crop, crops):
        clean = s.clean
        out = q.run_ours(restorer, q.Sample(s.image, s.crop, clean, clean.copy(), {}))
        hf_ref = ndimage.laplace(clean[..., 0].astype(np.float64)).std()
        hf_out = ndimage.laplace(out[..., 0].astype(np.float64)).std()
        rows.append(
            {
                "image": s.image,
                "crop": s.crop,
                "subset": q.subset_of(s.image),
                "ceiling_psnr": round(float(q.metrics(out, clean)[0]), 3),
                "sigma": round(haar_sigma(clean[..., 0]), 5),
                "hf_kept": round(float(hf_out / hf_ref) if hf_ref > 0 else 1.0, 3),
            }
        )
    return rows


def attach_results(rows: list[dict], task: str, results: Path) -> list[str]:
    """Add ``ours``/``bm3d`` PSNR per condition from a quality.py JSON; return the conditions found."""
    if not results.is_file():
        return []
    recs = json.loads(results.read_text())["records"]
    conds = sorted({r["condition"] for r in recs if r["task"] == task})
    psnr = {
        (r["condition"], r["method"], r["image"], r["crop"]): r["psnr"] for r in recs if r["task"] == task
    }
    for row in rows:
        for c in conds:
            for m in ("ours", "bm3d"):
                value = psnr.get((c, m, row["image"], row["crop"]))
                if value is not None:
                    row[f"{c}_{m}"] = round(value, 3)
    return conds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="denoise-fluo", choices=[t for t in q.TASKS if t.startswith("denoise")])
    p.add_argument(
        "--model", default=None, help="registry name, weights file or checkpoint (default: bundled)"
    )
    p.add_argument("--pool", type=Path, default=q.DEFAULT_POOL)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--crops", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=q.REPO / "benchmarks" / "results" / "quality_v2.json")
    p.add_argument("--json", default=None, help="default: benchmarks/results/reference_noise_<task>.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    restorer = q.load_ours(args.model or q.TASKS[args.task].model)
    rows = measure(restorer, args.task, args.pool, args.crop, args.crops)
    conds = attach_results(rows, args.task, args.results)
    cols = [f"{c}_{m}" for c in conds for m in ("ours", "bm3d")]
    print(f"| image | crop | ceiling (dB) | sigma | hf kept | {' | '.join(cols)} |")
    print("|---|---|---|---|---|" + "---|" * len(cols))
    for r in rows:
        extra = " | ".join(f"{r[c]:.2f}" if c in r else "-" for c in cols)
        print(
            f"| {r['image']} | {r['crop']} | {r['ceiling_psnr']:.2f} | {r['sigma']:.4f} | {r['hf_kept']:.2f} | {extra} |"
        )
    means = {}
    for subset in sorted({r["subset"] for r in rows}):
        sel = [r for r in rows if r["subset"] == subset]
        means[subset] = {
            k: round(float(np.mean([r[k] for r in sel if k in r])), 3)
            for k in ("ceiling_psnr", "sigma", "hf_kept", *cols)
            if any(k in r for r in sel)
        }
        print(f"mean {subset} (n={len(sel)}): {means[subset]}")
    write_json(
        f"reference_noise_{args.task}",
        {
            "command": "python " + " ".join(sys.argv),
            "task": args.task,
            "model": restorer.describe(),
            "wall_time_s": round(time.perf_counter() - t0, 1),
            "means": means,
            "rows": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
