"""CPU speed of the official-size HINet (wf=64, depth 5; or ``--model``) on a 256x256 RGB image.

Rows: bare forwards of the model (fp32, bf16 autocast) and the engine
(``Restorer.restore``) in fp32, in its default CPU path (``precision="auto"``:
bf16 on CPUs with bf16 instructions; conv weights pre-cast, channels_last), and
with ``compile="on"`` (first call = compile time, reported separately).
PSNR of each output against the fp32 engine output (float32 outputs, 0-255 units).

Usage:
    python benchmarks/bench_cpu_speed.py [--model NAME_OR_PATH] [--repeats 5] [--size 256]
        [--no-compile] [--threads N]

Without ``--model`` the weights are random (seeded); say so when quoting PSNR.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _engine_common import (
    add_noise,
    build_model,
    clean_image,
    load_average,
    print_table,
    psnr,
    timed,
    write_json,
)

from napari_hinet import Restorer
from napari_hinet.model import run_any_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="registry name or weights file (default: random weights, wf=64)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true", help="skip the compile='on' rows")
    parser.add_argument(
        "--variants", action="store_true", help="also time channels_last / pure-bf16 forwards"
    )
    parser.add_argument("--json", help="output path (default benchmarks/results/cpu_speed.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(args.model)
    noisy = add_noise(clean_image((args.size, args.size)), sigma=25)
    x = torch.from_numpy(noisy.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    rows = []

    def bare(dtype: torch.dtype):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                return run_any_size(model, x)

        return run

    for name, dtype in (("bare forward fp32", torch.float32), ("bare forward bf16 autocast", torch.bfloat16)):
        rows.append({"path": name, **timed(bare(dtype), args.repeats)})

    if args.variants:  # what each ingredient of the default path gives, on bare forwards
        import copy

        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        pure = copy.deepcopy(cl).to(torch.bfloat16)

        def variant(net, inp, autocast):
            def run():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    return net(inp)[-1]

            return run

        for name, run in (
            ("bare fp32 channels_last", variant(cl, x_cl, False)),
            ("bare bf16 autocast channels_last", variant(cl, x_cl, True)),
            (
                "bare pure bf16 (weights+activations) channels_last",
                variant(pure, x_cl.to(torch.bfloat16), False),
            ),
        ):
            rows.append({"path": name, **timed(run, args.repeats)})
        del cl, pure

    engines = {
        "engine fp32": Restorer(model, device="cpu", precision="fp32", compile="off"),
        "engine default (auto)": Restorer(model, device="cpu", compile="off"),
    }
    reference = engines["engine fp32"].restore(noisy, out_dtype="float32")
    for name, restorer in engines.items():
        row = {"path": name, "precision": str(restorer.dtype).replace("torch.", "")}
        row.update(timed(lambda r=restorer: r.restore(noisy), args.repeats))
        row["psnr_vs_fp32_db"] = round(psnr(restorer.restore(noisy, out_dtype="float32"), reference), 2)
        rows.append(row)

    if not args.no_compile:
        restorer = Restorer(model, device="cpu", compile="on")
        t0 = time.perf_counter()
        first = restorer.restore(noisy, out_dtype="float32")
        compile_s = time.perf_counter() - t0
        row = {
            "path": "engine default + compile='on'",
            "precision": str(restorer.dtype).replace("torch.", ""),
        }
        row.update(timed(lambda: restorer.restore(noisy, out_dtype="float32"), args.repeats, warmup=0))
        row["first_call_s"] = round(compile_s, 2)
        row["psnr_vs_fp32_db"] = round(psnr(first, reference), 2)
        rows.append(row)

    print(
        f"\nHINet {dict(model.config)} on {args.size}x{args.size} RGB, CPU, {torch.get_num_threads()} threads, "
        f"weights: {args.model or 'random (seed 0)'}; load now {load_average()}"
    )
    print_table(
        rows,
        [
            "path",
            "precision",
            "median_s",
            "min_s",
            "max_s",
            "cpu_s",
            "first_call_s",
            "psnr_vs_fp32_db",
            "load_after",
        ],
    )
    write_json(
        "cpu_speed",
        {"size": args.size, "weights": args.model or "random seed 0", "target_s": 0.35, "rows": rows},
        args.json,
    )


if __name__ == "__main__":
    main()
