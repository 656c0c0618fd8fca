"""int8 post-training quantisation (NNCF) of a bundled model in OpenVINO: speed against quality.

The one arithmetic faster than bf16 on this CPU is int8. This script measures
whether OpenVINO int8 keeps the quality of the bf16 path the engine runs:

1. data: the held-out test crops of ``benchmarks/quality.py`` for the model's
   task (every condition, 256-pixel crops, 2 per image), cut into 128-pixel
   tiles, each in the model's own normalisation (percentile for
   ``hinet-denoise-fluo``: the mapping of the noisy crop, applied to the clean
   one too); calibration tiles the same from the validation images;
2. the network is converted to OpenVINO (``openvino.convert_model``) and
   quantised with ``nncf.quantize`` on the calibration tiles, with the
   ``performance`` preset (symmetric) and the ``mixed`` one (asymmetric
   activations);
3. each variant runs the test tiles (bf16 inference precision for what is not
   int8); printed: mean PSNR of the tiles against the clean ones (and its
   difference to torch float32), PSNR against the float32 output, and
   throughput on batches of 16 tiles split between two requests (as the
   engine runs them), the variants interleaved.

Needs NNCF, which the package does not depend on: ``pip install nncf==3.4.0``.

Usage: python benchmarks/bench_int8.py [--model hinet-denoise-fluo] [--repeats 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import quality
import torch
from _engine_common import load_average, print_table, write_json

from napari_hinet.engine.devices import psnr_db
from napari_hinet.engine.intensity import DEFAULT_PERCENTILES, percentile_mapping
from napari_hinet.engine.openvino_backend import Stage2

TILE = 128


def tiles(task: str, split: str, percentile: bool) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) 128-pixel tiles (N, C, 128, 128) float32 of the task's crops of ``split``."""
    noisy, clean = [], []
    for condition in quality.TASKS[task].conditions:
        for s in quality.make_samples(quality.DEFAULT_POOL, task, condition, 256, 2, split):
            deg, ref = s.degraded, s.clean
            if percentile:
                mapping = percentile_mapping(deg, DEFAULT_PERCENTILES)
                deg, ref = mapping.forward(deg), mapping.forward(ref)
            deg, ref = np.moveaxis(deg, -1, 0), np.moveaxis(ref, -1, 0)
            for y in (0, TILE):
                for x in (0, TILE):
                    noisy.append(deg[:, y : y + TILE, x : x + TILE])
                    clean.append(ref[:, y : y + TILE, x : x + TILE])
    return np.stack(noisy).astype(np.float32), np.stack(clean).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="hinet-denoise-fluo")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        import nncf
    except ImportError:
        raise SystemExit("bench_int8.py needs NNCF: pip install nncf==3.4.0") from None
    import openvino as ov

    torch.set_num_threads(args.threads)
    net = quality.load_ours_model(args.model)
    restorer = quality.load_ours(args.model)
    task = quality.bench_task_of(restorer)
    percentile = restorer.metadata.get("normalization") == "percentile"
    calib, _ = tiles(task, "val", percentile)
    test, clean = tiles(task, "test", percentile)
    channels = test.shape[1]
    with torch.inference_mode():
        reference = np.concatenate(
            [Stage2(net)(torch.from_numpy(test[i : i + 16])).numpy() for i in range(0, len(test), 16)]
        )
    fp32_clean = statistics.mean(psnr_db(o, c) for o, c in zip(reference, clean, strict=True))

    with torch.no_grad():
        graph = ov.convert_model(
            Stage2(net.float().eval()), example_input=torch.zeros(1, channels, TILE, TILE)
        )
    variants = {"bf16 (the engine's path)": graph}
    for preset in ("performance", "mixed"):
        single = graph.clone()
        single.reshape([1, channels, TILE, TILE])
        data = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
        variants[f"int8 ({preset})"] = nncf.quantize(
            single,
            data,
            preset=nncf.QuantizationPreset(preset),
            subset_size=len(calib),
            fast_bias_correction=True,
        )

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "INFERENCE_NUM_THREADS": args.threads,
        "PERFORMANCE_HINT": "THROUGHPUT",
        "ENABLE_CPU_PINNING": False,
    }
    rows, timed = [], {}
    batch = test[:16]
    for name, model in variants.items():
        model = model.clone()
        model.reshape([-1, channels, TILE, TILE])
        compiled = core.compile_model(model, "CPU", config)
        requests = [compiled.create_infer_request() for _ in range(2)]
        out = np.concatenate([requests[0].infer({0: test[i : i + 8]})[0] for i in range(0, len(test), 8)])
        mean_clean = statistics.mean(psnr_db(o, c) for o, c in zip(out, clean, strict=True))
        rows.append(
            {
                "variant": name,
                "psnr_clean_db": round(mean_clean, 3),
                "dpsnr_clean_db": round(mean_clean - fp32_clean, 3),
                "psnr_vs_fp32_db": round(psnr_db(out, reference), 1),
            }
        )

        def once(requests=requests) -> None:
            for request, part in zip(requests, (batch[:8], batch[8:]), strict=True):
                request.start_async({0: part})
            for request in requests:
                request.wait()

        once()
        timed[name] = (once, [])
    for _ in range(args.repeats):
        for once, times in timed.values():
            t = time.perf_counter()
            once()
            times.append(time.perf_counter() - t)
    base = statistics.median(timed["bf16 (the engine's path)"][1])
    for row in rows:
        t = statistics.median(timed[row["variant"]][1])
        row.update(
            {
                "ms_per_16_tiles": round(1000 * t, 1),
                "mp_per_s": round(16 * TILE * TILE / t / 1e6, 2),
                "x_bf16": round(base / t, 2),
            }
        )
    print(
        f"\n{args.model}: {len(test)} test tiles of {TILE} px ({task}), torch float32 {fp32_clean:.3f} dB against clean; "
        f"{args.threads} threads, load {load_average()}"
    )
    print_table(
        rows,
        [
            "variant",
            "psnr_clean_db",
            "dpsnr_clean_db",
            "psnr_vs_fp32_db",
            "ms_per_16_tiles",
            "mp_per_s",
            "x_bf16",
        ],
    )
    write_json(
        "int8",
        {
            "model": args.model,
            "task": task,
            "tiles": len(test),
            "calibration_tiles": len(calib),
            "fp32_psnr_clean_db": round(fp32_clean, 3),
            "nncf": nncf.__version__,
            "openvino": ov.__version__,
            "rows": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
