"""GPU check of the engine (finishes in a few minutes on one GPU; ``--device cpu`` is a smoke test).

Sections, each printed as a table and saved to benchmarks/results/gpu_check_<device>.json:

1. parity: the public reference vectors (tests/data/reference, made on the CPU in
   float32) run on the device in float32 (TF32 off): max |out_2 - reference|;
   and the engine on the device vs the engine on the CPU (fp32, same image).
2. precision: fp16 and bf16 autocast vs fp32 on the device (PSNR, 0-255 units),
   wf=64 random weights (or ``--model``) on a noisy 512x512 photo.
3. throughput: megapixels per second and peak device memory for wf=64 with
   256, 512 and 1024 tiles (default precision, automatic batch), and for a
   4096x4096 RGB image with the default settings.
4. out-of-memory back-off: the device memory is capped with
   ``torch.cuda.set_per_process_memory_fraction`` and a run with a large batch
   and tile must finish with the back-off warnings (CUDA only).
5. training throughput (patches/s, wf=16 and wf=64) and any other function in
   :data:`EXTRA_CHECKS`, run last.

Usage:
    python benchmarks/gpu_check.py                 # CUDA
    python benchmarks/gpu_check.py --device cpu    # smoke test: small sizes
    python benchmarks/gpu_check.py --model hinet-denoise-photo
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _engine_common import ROOT, add_noise, build_model, clean_image, print_table, psnr, write_json

from napari_hinet import Restorer
from napari_hinet.model import HINet

#: Extra checks run at the end: ``fn(device, quick) -> list of result rows``.
EXTRA_CHECKS: list[Callable[[torch.device, bool], list[dict[str, Any]]]] = []


def training_throughput(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """Training patches per second for wf=16 and wf=64 (issue 5), via bench_training."""
    from bench_training import run_table

    precisions = ("fp32", "bf16") if device.type == "cpu" else ("fp32", "fp16", "bf16")
    return run_table(
        widths=(16,) if quick else (16, 64),
        precisions=precisions,
        device=str(device),
        batch=4 if quick else 16,
        patch=64 if quick else 128,
        steps=2 if quick else 20,
        warmup=1 if quick else 3,
    )


EXTRA_CHECKS.append(training_throughput)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def parity(device: torch.device) -> list[dict[str, Any]]:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    rows = []
    for path in sorted((ROOT / "tests" / "data" / "reference").glob("hinet_ref_*.pt")):
        ref = torch.load(path, map_location="cpu", weights_only=True)
        model = HINet(**ref["config"]).eval()
        model.load_state_dict(ref["params"], strict=True)
        model.to(device)
        with torch.inference_mode():
            out = model(ref["input"].to(device))[-1].cpu()
        rows.append(
            {"check": f"reference {path.stem}", "max_abs_diff": float((out - ref["out_2"]).abs().max())}
        )
    torch.manual_seed(0)
    small = HINet(wf=16, depth=5).eval()
    image = add_noise(clean_image((300, 420)))
    kwargs = {"precision": "fp32", "compile": "off", "tile": 128, "out_dtype": "float32"}
    on_cpu = Restorer(small, device="cpu", **{k: kwargs[k] for k in ("precision", "compile")})
    on_dev = Restorer(small, device=device, **{k: kwargs[k] for k in ("precision", "compile")})
    a = on_cpu.restore(image, tile=128, out_dtype="float32")
    b = on_dev.restore(image, tile=128, out_dtype="float32")
    rows.append(
        {
            "check": "engine device vs cpu (fp32, wf=16)",
            "max_abs_diff": float(np.abs(a - b).max()),
            "psnr_db": round(psnr(a, b), 2),
        }
    )
    return rows


def precision_errors(device: torch.device, model: HINet, quick: bool) -> list[dict[str, Any]]:
    size = 256 if quick else 512
    image = add_noise(clean_image((size, size)))
    reference = Restorer(model, device=device, precision="fp32", compile="off").restore(
        image, out_dtype="float32"
    )
    rows = []
    for precision in ("bf16", "fp16"):
        if device.type == "cpu" and precision == "fp16":
            continue
        try:
            restorer = Restorer(model, device=device, precision=precision, compile="off")
        except ValueError as error:
            rows.append({"precision": precision, "note": str(error)})
            continue
        out = restorer.restore(image, out_dtype="float32")
        rows.append(
            {
                "precision": precision,
                "psnr_vs_fp32_db": round(psnr(out, reference), 2),
                "max_abs_diff": round(float(np.abs(out - reference).max()), 3),
            }
        )
    return rows


def throughput(device: torch.device, model: HINet, quick: bool) -> list[dict[str, Any]]:
    restorer = Restorer(model, device=device, compile="off")
    cases = (
        [(256, 256, "blend")]
        if quick
        else [(t, 2048, "blend") for t in (256, 512, 1024)] + [(256, 4096, "blend")]
    )
    rows = []
    for tile, size, tiling in cases:
        image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        restorer.restore(image[:tile, :tile], tile=tile)  # warm-up (and batch probe)
        reset_peak(device)
        synchronize(device)
        t0 = time.perf_counter()
        steps = []
        restorer.restore(image, tile=tile, tiling=tiling, progress=lambda d, t, s=steps: s.append((d, t)))
        synchronize(device)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "image": f"{size}x{size}",
                "tile": tile,
                "tiles": steps[-1][1],
                "batches": len(steps) - 1,
                "precision": str(restorer.dtype).replace("torch.", ""),
                "seconds": round(seconds, 3),
                "mpix_per_s": round(size * size / seconds / 1e6, 2),
                "peak_mib": peak_memory_mib(device),
            }
        )
    return rows


def oom_backoff(device: torch.device, model: HINet) -> list[dict[str, Any]]:
    if device.type != "cuda":
        return [{"check": "oom back-off", "result": "skipped (CUDA only)"}]
    restorer = Restorer(model, device=device, compile="off")
    image = np.random.default_rng(0).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    total = torch.cuda.get_device_properties(device).total_memory
    cap_gib = 2.0
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap_gib * 2**30 / total, device)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            out = restorer.restore(image, tile=1024, batch_size=16)
            seconds = time.perf_counter() - t0
        messages = [str(w.message) for w in caught if "Out of memory" in str(w.message)]
        return [
            {
                "check": f"oom back-off (cap {cap_gib} GiB, tile 1024, batch 16)",
                "result": "finished",
                "shape_ok": out.shape == image.shape,
                "seconds": round(seconds, 2),
                "warnings": len(messages),
                "first_warning": messages[0] if messages else "",
                "last_warning": messages[-1] if messages else "",
            }
        ]
    except Exception as error:  # noqa: BLE001 (the report must show any failure)
        return [{"check": "oom back-off", "result": f"FAILED: {error!r:.300}"}]
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", help="registry name or weights (default: random wf=64)")
    parser.add_argument("--quick", action="store_true", help="small sizes (implied by --device cpu)")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device(args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    if str(device) != args.device and args.device == "cuda":
        print("CUDA is not available: running the CPU smoke test.")
    quick = args.quick or device.type == "cpu"
    model = build_model(args.model)
    report: dict[str, Any] = {"device": str(device), "quick": quick, "weights": args.model or "random wf=64"}
    started = time.perf_counter()
    sections = [
        ("parity", lambda: parity(device), ["check", "max_abs_diff", "psnr_db"]),
        (
            "precision",
            lambda: precision_errors(device, model, quick),
            ["precision", "psnr_vs_fp32_db", "max_abs_diff", "note"],
        ),
        (
            "throughput",
            lambda: throughput(device, model, quick),
            ["image", "tile", "tiles", "batches", "precision", "seconds", "mpix_per_s", "peak_mib"],
        ),
        (
            "oom_backoff",
            lambda: oom_backoff(device, model),
            ["check", "result", "shape_ok", "seconds", "warnings", "first_warning"],
        ),
    ]
    for check in EXTRA_CHECKS:
        sections.append((check.__name__, lambda c=check: c(device, quick), None))
    for name, run, columns in sections:
        t0 = time.perf_counter()
        try:
            rows = run()
        except Exception as error:  # noqa: BLE001 (keep going: later sections still report)
            rows = [{"error": repr(error)[:500]}]
            columns = ["error"]
        report[name] = {"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"\n== {name} ({report[name]['seconds']} s) ==")
        print_table(rows, columns or sorted({k for r in rows for k in r}))
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ntotal {report['total_seconds']} s on {device}")
    write_json(f"gpu_check_{device.type}", report, args.json)


if __name__ == "__main__":
    main()
