#!/usr/bin/env python
"""PSNR and time of each widget's default model on the four shipped samples (docs/napari.md).

Each sample (``napari_hinet._sample_data``: degraded image + clean twin) is
restored by ``napari_hinet.restore`` with the model the widget picks for it
by default, output in the input's dtype, as the widget writes it. PSNR is
against the clean twin: 8-bit samples with peak 255; the 16-bit fluorescence
sample after removing its camera offset (100), with the clean image's peak.
Time: the second of two runs (the first loads the model).

Usage:
    python benchmarks/bench_samples.py [--json PATH]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _engine_common import load_average, print_table, write_json

from napari_hinet import _sample_data as samples
from napari_hinet import restore

CASES = (
    ("noisy_fluorescence", "hinet-denoise-fluo"),
    ("noisy_photo", "hinet-denoise-photo"),
    ("blurred_photo", "hinet-deblur-photo"),
    ("rainy_photo", "hinet-derain-photo"),
)
CAMERA_OFFSET = 100


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    return float(10 * np.log10(peak**2 / np.mean((a - b) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="output path (default benchmarks/results/samples.json)")
    args = parser.parse_args()
    rows = []
    for sample, model in CASES:
        (clean, _, _), (degraded, _, _) = getattr(samples, sample)()
        restore(degraded, model=model)
        t0 = time.perf_counter()
        out = restore(degraded, model=model)
        seconds = time.perf_counter() - t0
        c, d, o = (np.asarray(x, np.float64) for x in (clean, degraded, out))
        if degraded.dtype == np.uint8:
            peak = 255.0
        else:
            c, d, o = c - CAMERA_OFFSET, d - CAMERA_OFFSET, o - CAMERA_OFFSET
            peak = float(c.max())
        rows.append(
            {
                "sample": sample,
                "shape": "x".join(map(str, degraded.shape)),
                "model": model,
                "degraded_db": round(psnr(d, c, peak), 2),
                "restored_db": round(psnr(o, c, peak), 2),
                "seconds": round(seconds, 2),
            }
        )
    print(f"\nload now {load_average()}")
    print_table(rows, ["sample", "shape", "model", "degraded_db", "restored_db", "seconds"])
    write_json("samples", {"rows": rows}, args.json)


if __name__ == "__main__":
    main()
