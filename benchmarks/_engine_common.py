"""Shared helpers of the engine benchmarks: machine facts, images, models, tables, JSON.

Not a benchmark itself; imported by ``bench_*.py`` and ``gpu_check.py`` (they run as
scripts, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_hinet.engine.devices import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = ROOT / "src" / "napari_hinet" / "samples"

#: The official architecture (SIDD-1x / GoPro / REDS / Rain13k size).
OFFICIAL = {
    "in_chn": 3,
    "wf": 64,
    "depth": 5,
    "relu_slope": 0.2,
    "hin_position_left": 0,
    "hin_position_right": 4,
}


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages (``uptime``); the machine is shared."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU model, cores, threads, torch version and load, for every result file."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": load_average(),
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def build_model(model: str | None, wf: int = 64, seed: int = 0):
    """``load_model(model)`` if given, else the official architecture with seeded random weights."""
    if model:
        from napari_hinet import load_model

        return load_model(model)
    from napari_hinet.model import HINet

    torch.manual_seed(seed)
    net = HINet(**{**OFFICIAL, "wf": wf}).eval()
    net.metadata = {"name": f"random-wf{wf}", "patch_size": 256, "normalization": "fixed"}
    return net


def clean_image(size: tuple[int, int] | None = None, path: str | None = None) -> np.ndarray:
    """A clean RGB uint8 photo: ``path``, else the shipped astronaut sample, mirrored/cropped to ``size``.

    A larger ``size`` extends the photo by mirror reflection (no hard edges).
    """
    import imageio.v3 as iio

    image = np.asarray(iio.imread(path or SAMPLES / "astronaut.png"))[..., :3]
    if size is not None:
        pad = [(0, max(0, size[0] - image.shape[0])), (0, max(0, size[1] - image.shape[1])), (0, 0)]
        while any(p[1] > 0 for p in pad[:2]):
            step = [(0, min(p[1], n)) for p, n in zip(pad[:2], image.shape[:2], strict=True)] + [(0, 0)]
            image = np.pad(image, step, mode="symmetric")
            pad = [(0, max(0, size[0] - image.shape[0])), (0, max(0, size[1] - image.shape[1])), (0, 0)]
        image = image[: size[0], : size[1]]
    return np.ascontiguousarray(image)


def add_noise(image: np.ndarray, sigma: float = 25.0, seed: int = 0) -> np.ndarray:
    """Gaussian noise of ``sigma`` (in 0-255 units), rounded and clipped to uint8."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two arrays in the same units."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Median/min/max seconds of ``repeats`` calls after ``warmup`` calls, with the load at the end."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        # CPU seconds of this process per call (all threads): on a busy machine, wall time
        # also counts waiting for a core; cpu_s / threads approximates an idle wall time.
        "cpu_s": round(statistics.median(cpu), 4),
        "runs_s": [round(t, 4) for t in times],
        "load_after": load_average(),
    }


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain fixed-width table of ``columns`` of ``rows``."""
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_json(name: str, data: dict[str, Any], path: str | None = None) -> Path:
    """Write ``data`` plus machine facts to ``path`` or benchmarks/results/<name>.json."""
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return out
