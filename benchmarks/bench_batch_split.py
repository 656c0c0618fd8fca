"""CPU batch size against OpenVINO's streams: tiles per forward that split evenly, or not.

OpenVINO runs a batch of several tiles on its throughput streams, one thread
each on a 2-core CPU, the batch split between them (rule 4 of
``napari_hinet.engine.openvino_backend``). A batch of 7 tiles runs as 4 + 3:
one stream idles for a tile's time in every forward. The engine's CPU batch
(``engine/batching.py`` rule 2) is therefore rounded down to a multiple of the
threads; this script measures what that buys.

Rows (interleaved, so that load changes hit all alike), each a whole
``Restorer.restore`` with ``backend="auto"`` (OpenVINO at these sizes):

* ``hinet-deblur-photo`` (192-pixel tiles, its default) on a 1024 x 1024 RGB photo;
* ``hinet-denoise-fluo`` with ``tile=192`` on a 2048 x 2048 uint16 plane;

each with ``batch_size`` 6, 7 (the work rule alone, before the rounding) and 8,
and the default (``None``: the rule with the rounding).

Usage: python benchmarks/bench_batch_split.py [--repeats 3] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _engine_common import add_noise, clean_image, load_average, print_table, write_json

from napari_hinet import Restorer

CASES = {
    "deblur 1024 rgb (tile 192)": ("hinet-deblur-photo", None),
    "fluo 2048 uint16 (tile 192)": ("hinet-denoise-fluo", 192),
}
BATCHES = (None, 6, 7, 8)


def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    fluo = rng.poisson(np.full((2048, 2048), 200.0)).astype(np.uint16)
    return {
        "deblur 1024 rgb (tile 192)": add_noise(clean_image((1024, 1024)), 2.0),
        "fluo 2048 uint16 (tile 192)": fluo,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = images()
    rows = []
    for case, (name, tile) in CASES.items():
        restorer = Restorer(name)
        image = data[case]
        axes = "YXC" if image.ndim == 3 else "YX"
        runs: dict[int | None, list[float]] = {b: [] for b in BATCHES}
        for b in BATCHES:  # warm-up: OpenVINO start and one compile per batch shape
            restorer.restore(image, axes=axes, tile=tile, batch_size=b)
        for _ in range(args.repeats):
            for b in BATCHES:
                t = time.perf_counter()
                restorer.restore(image, axes=axes, tile=tile, batch_size=b)
                runs[b].append(time.perf_counter() - t)
        plan = restorer.plan(image.shape, axes=axes, tile=tile)
        for b, times in runs.items():
            rows.append(
                {
                    "case": case,
                    "batch_size": "default" if b is None else b,
                    "tiles": plan["tiles"],
                    "backend": restorer.describe().split(", ")[-1],
                    "median_s": round(statistics.median(times), 3),
                    "min_s": round(min(times), 3),
                    "runs_s": [round(t, 3) for t in times],
                    "load_after": load_average(),
                }
            )
    print(f"\nCPU, {args.threads} threads")
    print_table(rows, ["case", "batch_size", "tiles", "backend", "median_s", "min_s", "runs_s", "load_after"])
    write_json("batch_split", {"threads": args.threads, "repeats": args.repeats, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
