"""When should ``normalization="auto"`` choose percentile over fixed for photos? (issue 15)

Photos that use a small part of their dtype range (a dim float image in [0, 0.01],
12-bit data in a uint16 file) lost quality under the fixed mapping. This script
measures, on the three sample photos with Gaussian noise (sigma 25/255), the
PSNR of ``hinet-denoise-photo`` with ``"fixed"`` and ``"percentile"`` while the
data are scaled to a fraction ``span`` of the dtype range (float: [0, span];
uint16 and uint8: [0, span * max]). PSNR is measured in the data's own units
(the clean image scaled the same way, peak = span * max). The result decides
the threshold of the auto rule (:func:`napari_hinet.engine.intensity.choose_normalization`).

    .venv/bin/python benchmarks/bench_auto_normalization.py   # table + results/auto_normalization.json
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _engine_common import SAMPLES, machine, print_table, write_json

SPANS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03, 0.01)
CROP = 192


def _photos() -> dict[str, np.ndarray]:
    import imageio.v3 as iio

    out = {}
    for name in ("astronaut", "chelsea", "coffee"):
        img = np.asarray(iio.imread(SAMPLES / f"{name}.png"))[..., :3].astype(np.float32) / 255.0
        y0, x0 = (img.shape[0] - CROP) // 2, (img.shape[1] - CROP) // 2
        out[name] = img[y0 : y0 + CROP, x0 : x0 + CROP]
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse)


def main() -> int:
    from napari_hinet.engine import Restorer
    from napari_hinet.engine.intensity import choose_normalization

    restorer = Restorer("hinet-denoise-photo", device="cpu", precision="fp32", compile="off")
    rng = np.random.default_rng(0)
    rows = []
    start = time.perf_counter()
    for name, clean in _photos().items():
        noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
        for kind in ("float32", "uint16", "uint8"):
            for span in SPANS:
                if kind == "uint8" and span < 0.125:
                    continue  # fewer than 32 grey levels: quantisation dominates
                top = 1.0 if kind == "float32" else float(np.iinfo(kind).max)
                if kind == "float32":
                    data = noisy * np.float32(span)
                else:
                    data = np.rint(noisy * span * top).astype(kind)
                row = {
                    "image": name,
                    "dtype": kind,
                    "span": span,
                    "input_db": _psnr(data / (span * top), clean),
                }
                for how in ("fixed", "percentile"):
                    out = restorer.restore(data, normalization=how, out_dtype="float32")
                    row[f"{how}_db"] = round(_psnr(out / (span * top), clean), 2)
                sample = data.reshape(-1, 3).T
                row["auto_now"] = choose_normalization("auto", np.dtype(kind), True, "fixed", sample)
                row["input_db"] = round(row["input_db"], 2)
                rows.append(row)
                print(row, flush=True)
    summary = []
    for kind in ("float32", "uint16", "uint8"):
        for span in SPANS:
            sel = [r for r in rows if r["dtype"] == kind and r["span"] == span]
            if sel:
                summary.append(
                    {
                        "dtype": kind,
                        "span": span,
                        "input_db": round(float(np.mean([r["input_db"] for r in sel])), 2),
                        "fixed_db": round(float(np.mean([r["fixed_db"] for r in sel])), 2),
                        "percentile_db": round(float(np.mean([r["percentile_db"] for r in sel])), 2),
                    }
                )
    print_table(summary, ["dtype", "span", "input_db", "fixed_db", "percentile_db"])
    write_json(
        "auto_normalization",
        {
            "what": "PSNR (dB) of hinet-denoise-photo with fixed vs percentile normalisation on photos "
            "scaled to a fraction `span` of their dtype range; mean over astronaut, chelsea, coffee "
            f"({CROP} px crops, Gaussian noise sigma 25/255)",
            "command": "benchmarks/bench_auto_normalization.py",
            "machine": machine(),
            "seconds": round(time.perf_counter() - start, 1),
            "summary": summary,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
