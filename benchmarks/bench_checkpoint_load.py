"""Time ``load_model`` on a full-size (wf=64) checkpoint, and print the parity numbers.

Builds a synthetic official checkpoint with random weights in the HINet-SIDD-1x layout
(88.7 M parameters, 355 MB in float32), saves it as BasicSR does (legacy and zip
``torch.save``), converts it to our ``.safetensors`` format (float32 and float16), and times
``load_model`` on each (median of N runs, files in the OS page cache). Also times the
pieces: reading the file, hashing the weights (sha256), building the model.

Usage: python benchmarks/bench_checkpoint_load.py [--repeats 5] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from napari_hinet import HINet, load_model, save_model
from napari_hinet.checkpoints import expected_shapes, load_state_dict, weights_sha256
from napari_hinet.engine.devices import cpu_name

ROOT = Path(__file__).resolve().parents[1]
SIDD_1X = {
    "in_chn": 3,
    "wf": 64,
    "depth": 5,
    "relu_slope": 0.2,
    "hin_position_left": 0,
    "hin_position_right": 4,
}


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def parity() -> list[dict]:
    rows = []
    for path in sorted((ROOT / "tests" / "data" / "reference").glob("hinet_ref_*.pt")):
        ref = torch.load(path, map_location="cpu", weights_only=True)
        model = HINet(**ref["config"])
        model.load_state_dict(ref["params"], strict=True)
        with torch.inference_mode():
            out_1, out_2 = model.eval()(ref["input"])
        rows.append(
            {
                "vector": path.stem,
                "out_1_max_abs_diff": (out_1 - ref["out_1"]).abs().max().item(),
                "out_2_max_abs_diff": (out_2 - ref["out_2"]).abs().max().item(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results: dict = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "loadavg_before": os.getloadavg(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "parity": parity(),
        "load": [],
    }
    print("parity (max abs diff vs official outputs):")
    for row in results["parity"]:
        print(
            f"  {row['vector']:<30} out_1 {row['out_1_max_abs_diff']:.3g}   out_2 {row['out_2_max_abs_diff']:.3g}"
        )

    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.02 for k, s in expected_shapes(SIDD_1X).items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {
            "official .pth, legacy, module. prefix": tmp / "legacy" / "HINet-SIDD-1x.pth",
            "official .pth, zip": tmp / "zip" / "HINet-SIDD-1x.pth",
        }
        for label, path in files.items():
            path.parent.mkdir()
            legacy = "legacy" in label
            params = {f"module.{k}": v for k, v in sd.items()} if legacy else sd
            torch.save({"params": params}, path, _use_new_zipfile_serialization=not legacy)
        model = load_model(files["official .pth, zip"])
        files["ours .safetensors, float32"] = save_model(model, tmp / "ours32.safetensors", task="denoise")
        files["ours .safetensors, float16"] = save_model(
            model, tmp / "ours16.safetensors", task="denoise", dtype=torch.float16
        )
        del model

        print(f"\nload_model, HINet-SIDD-1x layout (wf=64, 88.7 M params), median of {args.repeats}:")
        print(f"  {'file':<40} {'MB':>7} {'load_model':>11} {'read only':>10}")
        for label, path in files.items():
            load_model(path)  # warm the page cache
            med, runs = timed(lambda p=path: load_model(p), args.repeats)
            read_med, _ = timed(lambda p=path: load_state_dict(p), args.repeats)
            size = path.stat().st_size / 1e6
            results["load"].append(
                {
                    "file": label,
                    "MB": size,
                    "load_model_s": med,
                    "runs_s": runs,
                    "read_state_dict_s": read_med,
                }
            )
            print(f"  {label:<40} {size:7.1f} {med:10.3f}s {read_med:9.3f}s")
        keys = list(sd)
        sha_med, _ = timed(lambda: weights_sha256(sd, keys), args.repeats)
        results["sha256_s"] = sha_med
        print(f"  of which sha256 of the weights: {sha_med:.3f}s")
        init_med, _ = timed(lambda: HINet(**SIDD_1X), args.repeats)
        results["random_init_HINet_s"] = init_med
        print(f"  for comparison, HINet(wf=64) with random init: {init_med:.3f}s")
    results["machine"]["loadavg_after"] = os.getloadavg()
    print(
        f"\nload average before/after: {results['machine']['loadavg_before']} / {results['machine']['loadavg_after']}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
