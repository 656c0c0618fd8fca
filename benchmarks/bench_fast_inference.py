#!/usr/bin/env python
"""Fast inference (issue 11): bare torch fp32 forward, the default path and the OpenVINO path, in one run.

Two cases, each on the CPU with ``--threads`` threads (default 2):

``fluo 2048``
    a 2048x2048 uint16 image (the shipped nuclei sample, mirrored to size, with
    Poisson-Gaussian noise) and the default denoiser (``hinet-denoise-fluo``);
``rgb 256 wf=64``
    a 256x256 RGB photo with sigma-25 noise and the official-size HINet (wf=64,
    depth 5, seeded random weights) through ``Restorer``.

Rows:

* ``bare torch fp32``: one forward of the whole image (``run_any_size``, float32);
* ``old default``: the engine's default path before 0.2 (torch, tiles of the
  patch size overlapping by a quarter, 65,536 pixels per CPU batch);
* ``torch (new overlap and batch)``: torch with 0.2's default overlap and batch;
* ``default (backend auto)``: the default path (OpenVINO for runs this large,
  default precision: bf16 where the CPU has it, default tiles and batch);
* ``... fp32`` rows: the same tiling in float32 (the reference of each mode);
* with ``--contention``: both again while a second process keeps one core busy.

Columns: median seconds of ``--repeats`` runs after a first run (``prepare_s``:
building the Restorer, incl. precision self-check and OpenVINO conversion, which
is cached on disk after the first time; ``first_s``: the first run, incl.
compiling each tile shape), CPU seconds per run (``cpu_s``), megapixels per
second, speed-up over the bare fp32 forward, PSNR against the fp32 torch
output of the same mode (``psnr_vs_fp32_db``, data units), and the difference
of PSNR against the clean image from that fp32 reference (``dpsnr_clean_db``).

Usage:
    python benchmarks/bench_fast_inference.py [--threads 2] [--repeats 3] [--contention]
        [--cases fluo,rgb] [--size 2048] [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch
from _engine_common import (
    SAMPLES,
    add_noise,
    build_model,
    clean_image,
    load_average,
    print_table,
    psnr,
    timed,
    write_json,
)

from napari_hinet import Restorer, load_model
from napari_hinet.model import run_any_size

OLD = "old default (0.1: torch, overlap tile // 4)"
DEFAULT = "default (backend auto)"


def _spin(stop) -> None:  # a second process keeping one core busy
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def fluo_image(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy uint16) of ``size`` x ``size`` from the nuclei sample: data = 500 + 4000 * [0, 1]."""
    import tifffile

    plane = np.asarray(tifffile.imread(SAMPLES / "nuclei_bbbc038.tif"), np.float64)
    plane = plane[..., 0] if plane.ndim == 3 else plane
    reps = -(-size // min(plane.shape))
    tiled = np.pad(plane, [(0, plane.shape[0] * reps), (0, plane.shape[1] * reps)], mode="symmetric")
    clean = tiled[:size, :size]
    clean = (clean - clean.min()) / max(1e-9, np.ptp(clean))
    rng = np.random.default_rng(0)
    photons = 30.0
    noisy = rng.poisson(clean * photons) / photons + rng.normal(0, 0.02, clean.shape)
    return clean * 4000 + 500, np.clip(noisy * 4000 + 500, 0, 65535).astype(np.uint16)


def run_case(name: str, model, x: torch.Tensor, clean, noisy, axes: str, peak: float, args) -> list[dict]:
    """Rows of one case: bare fp32 forward of ``x`` (1, C, H, W), engine paths on ``noisy``.

    ``clean`` (data units, or None) and ``peak`` (data units) give the PSNR columns.
    """
    mp_size = noisy.shape[0] * noisy.shape[1] / 1e6
    rows: list[dict] = []

    def bare():
        with torch.inference_mode():
            return run_any_size(model, x)

    bare_row = {"case": name, "path": "bare torch fp32 (whole image)", **timed(bare, 1, warmup=0)}
    rows.append(bare_row)

    patch = int(model.metadata.get("patch_size") or 256)
    old_batch = max(1, 256 * 256 // patch**2)  # 0.1's CPU batch: 65,536 pixels per forward
    engines = {  # label -> (Restorer options, restore() options)
        OLD: ({"backend": "torch"}, {"overlap": patch // 4, "batch_size": old_batch}),
        "torch (new overlap and batch)": ({"backend": "torch"}, {}),
        DEFAULT: ({}, {}),
        "torch fp32 (same tiles)": ({"backend": "torch", "precision": "fp32"}, {}),
    }
    if args.all:
        engines["openvino fp32 (same tiles)"] = ({"backend": "openvino", "precision": "fp32"}, {})
    outputs, runs = {}, {}
    for label, (options, call) in engines.items():
        t0 = time.perf_counter()
        r = Restorer(model, device="cpu", compile="off", **options)
        t1 = time.perf_counter()
        outputs[label] = r.restore(noisy, axes=axes, out_dtype="float32", **call)
        first = time.perf_counter() - t1
        runs[label] = (r, call)
        row = {"case": name, "path": label, "backend": r.backend, "precision": r.precision}
        row.update(timed(lambda r=r, call=call: r.restore(noisy, axes=axes, **call), args.repeats, warmup=0))
        row["prepare_s"] = round(t1 - t0, 2)  # model copy, precision self-check, OpenVINO conversion
        row["first_s"] = round(first, 2)  # first run: includes compiling each new tile shape
        rows.append(row)

    reference = outputs["torch fp32 (same tiles)"]
    ref_clean = psnr(reference, clean, peak=peak) if clean is not None else None
    for row in rows:
        row["mp_per_s"] = round(mp_size / row["median_s"], 3)
        row["x_bare_fp32"] = round(bare_row["median_s"] / row["median_s"], 2)
        out = outputs.get(row["path"])
        if out is not None:
            row["psnr_vs_fp32_db"] = round(psnr(out, reference, peak=peak), 2)
            if clean is not None:
                row["dpsnr_clean_db"] = round(psnr(out, clean, peak=peak) - ref_clean, 3)

    if args.contention:
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        try:
            for label in (OLD, DEFAULT):
                r, call = runs[label]
                row = {"case": name, "path": f"{label}, 1 core busy", "backend": r.backend}
                row.update(
                    timed(lambda r=r, call=call: r.restore(noisy, axes=axes, **call), args.repeats, warmup=0)
                )
                row["mp_per_s"] = round(mp_size / row["median_s"], 3)
                row["x_bare_fp32"] = round(bare_row["median_s"] / row["median_s"], 2)
                rows.append(row)
        finally:
            stop.set()
            spinner.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="fluo,rgb")
    parser.add_argument("--size", type=int, default=2048, help="edge of the fluo image (default 2048)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contention", action="store_true", help="also run with one core kept busy")
    parser.add_argument("--all", action="store_true", help="also the OpenVINO fp32 row")
    parser.add_argument("--json", help="output path (default benchmarks/results/fast_inference.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list[dict] = []
    cases = [c for c in args.cases.split(",") if c]
    if "fluo" in cases:
        clean, noisy = fluo_image(args.size)
        model = load_model("hinet-denoise-fluo")
        x = torch.from_numpy((noisy.astype(np.float32) - 500) / 4000)[None, None]
        rows += run_case(f"fluo {args.size} uint16", model, x, clean, noisy, "YX", 4000.0, args)
    if "rgb" in cases:
        clean_rgb = clean_image((256, 256))
        noisy_rgb = add_noise(clean_rgb, sigma=25)
        model = build_model(None, wf=64)
        x = torch.from_numpy(noisy_rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255)
        rows += run_case(
            "rgb 256 wf=64", model, x, clean_rgb.astype(np.float64), noisy_rgb, "YXC", 255.0, args
        )

    print(f"\nCPU, {args.threads} threads; load now {load_average()}")
    print_table(
        rows,
        [
            "case",
            "path",
            "backend",
            "precision",
            "median_s",
            "min_s",
            "cpu_s",
            "prepare_s",
            "first_s",
            "mp_per_s",
            "x_bare_fp32",
            "psnr_vs_fp32_db",
            "dpsnr_clean_db",
            "load_after",
        ],
    )
    write_json(
        "fast_inference",
        {
            "threads": args.threads,
            "repeats": args.repeats,
            "targets": {"fluo_x_bare_fp32": 6.0, "rgb_x_bare_fp32": 2.4, "max_dpsnr_db": 0.05},
            "rows": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
