"""Peak host memory of a tiled restoration: 4096x4096 RGB uint8, wf=64 model.

Each case runs in a fresh subprocess (``python bench_memory.py --child ...``) and
the peak resident set size of that process is read with ``resource.getrusage``
(``ru_maxrss``, the same number ``/usr/bin/time -v`` prints). The baseline case
builds the model and does nothing else. Target: peak RSS <= 3 GB for the tiled run.

Usage:
    python benchmarks/bench_memory.py [--size 4096] [--precision auto] [--tile 256]
    python benchmarks/bench_memory.py --size 1024      # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from _engine_common import build_model

    from napari_hinet import Restorer

    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(None)
    report = {"case": args.child}
    if args.child == "restore":
        restorer = Restorer(model, device="cpu", precision=args.precision, compile="off")
        del model
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        done = []
        t0 = time.perf_counter()
        out = restorer.restore(image, tile=args.tile, progress=lambda d, t: done.append((d, t)))
        report.update(
            seconds=round(time.perf_counter() - t0, 1),
            tiles=done[-1][1],
            out_shape=list(out.shape),
            precision=restorer.precision,
            backend=restorer.backend,
            threads=torch.get_num_threads(),
        )
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the child (0: default)")
    parser.add_argument("--child", choices=["model_only", "restore"])
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from _engine_common import load_average, print_table, write_json

    rows = []
    for case in ("model_only", "restore"):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            case,
            "--size",
            str(args.size),
            "--tile",
            str(args.tile),
            "--precision",
            args.precision,
            "--threads",
            str(args.threads),
        ]
        load_before = load_average()
        result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=HERE)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["peak_rss_gb"] = round(row["peak_rss_mib"] / 1024, 2)
        row["load_before"] = load_before
        row["load_after"] = load_average()
        rows.append(row)
    print(f"\nPeak RSS, wf=64, {args.size}x{args.size} RGB uint8, tile {args.tile} (blend), CPU")
    print_table(
        rows,
        [
            "case",
            "peak_rss_mib",
            "peak_rss_gb",
            "seconds",
            "tiles",
            "precision",
            "backend",
            "load_before",
            "load_after",
        ],
    )
    write_json("memory", {"size": args.size, "tile": args.tile, "target_gb": 3.0, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
