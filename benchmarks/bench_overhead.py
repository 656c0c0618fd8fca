"""Engine overhead: restore() vs a bare forward, 512x512 RGB, wf=64, untiled, fp32, CPU.

Rows (interleaved, so that load changes hit all alike):
  * bare forward: ``model(x)`` in ``torch.inference_mode`` on the prepared float32
    tensor (1, 3, 512, 512), default memory format, and the same in channels_last
    (what the engine runs, so engine minus this row is the engine's own work);
  * ``Restorer.restore(image, tiling="none")``: uint8 in, uint8 out, model kept loaded;
  * ``restore(image, model, tiling="none")``: the one-shot function (copies the
    model, then the same as above).
The requirement is the engine within 10 % of the bare forward.

Usage: python benchmarks/bench_overhead.py [--size 512] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from _engine_common import add_noise, build_model, clean_image, load_average, print_table, write_json

from napari_hinet import Restorer, restore


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(None)
    image = add_noise(clean_image((args.size, args.size)))
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    restorer = Restorer(model, device="cpu", precision="fp32", compile="off")
    options = {"tiling": "none", "normalization": "fixed"}

    def bare():
        with torch.inference_mode():
            return model(x)[-1]

    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def bare_cl():
        with torch.inference_mode():
            return model_cl(x_cl)[-1]

    cases = {
        "bare forward (fp32)": bare,
        "bare forward channels_last (fp32)": bare_cl,
        "Restorer.restore (fp32, untiled)": lambda: restorer.restore(image, **options),
        "restore() one-shot (fp32, untiled)": lambda: restore(
            image, model, device="cpu", precision="fp32", compile="off", **options
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)

    base = statistics.median(times["bare forward (fp32)"])
    base_cpu = statistics.median(cpu["bare forward (fp32)"])
    rows = []
    for name, ts in times.items():
        med, med_cpu = statistics.median(ts), statistics.median(cpu[name])
        rows.append(
            {
                "path": name,
                "median_s": round(med, 3),
                "min_s": round(min(ts), 3),
                "vs_bare": f"{100 * (med / base - 1):+.1f}%",
                # process CPU seconds: less sensitive than wall time to other jobs on the machine
                "cpu_s": round(med_cpu, 3),
                "cpu_vs_bare": f"{100 * (med_cpu / base_cpu - 1):+.1f}%",
                "runs_s": [round(t, 3) for t in ts],
            }
        )
    print(
        f"\nHINet wf=64 on {args.size}x{args.size} RGB uint8, untiled fp32, {torch.get_num_threads()} threads; "
        f"load {load_average()}"
    )
    print_table(rows, ["path", "median_s", "min_s", "vs_bare", "cpu_s", "cpu_vs_bare", "runs_s"])
    write_json(
        "overhead", {"size": args.size, "target": "within 10% of bare forward", "rows": rows}, args.json
    )


if __name__ == "__main__":
    main()
