"""restore() speed before and after the engine refactor (issue 10), side by side in one run.

The "before" side (``--before``) is a copy of this checkout's ``src`` whose
``engine/`` modules are those of the commit before the refactor (cf7b740), so
that only the engine differs (the model code is the same on both sides)::

    cp -r src /tmp/before/ && rm /tmp/before/src/napari_hinet/engine/{plan,predictor,batching,runner,cache,mappings}.py
    for f in __init__ axes devices intensity lazy restore tiling; do
        git show cf7b740:src/napari_hinet/engine/$f.py > /tmp/before/src/napari_hinet/engine/$f.py; done

The "after" side (``--after``) is this checkout's ``src`` by default, or a
tree made the same way from the refactor's commit (to time the refactor alone
while later engine work is under way in the checkout). Each (engine, workload) is timed in its own fresh
Python process (model built from the same seed, one warm-up call, then
``--repeats`` timed calls of ``napari_hinet.restore``-equivalent
``Restorer.restore``), and the processes alternate before/after for
``--rounds`` rounds, so that load changes hit both alike. The table shows the
median (and best) seconds per call of each side and after/before, and the
engine's own seconds per call (the call minus the time inside the network's
forwards, measured with forward hooks: what the refactor could change, and
what machine load disturbs least); the outputs of the two
sides are compared too (max abs difference: the refactor must not change results).

Workloads (CPU, fp32, eager; small random HINets, wf=8, so that the engine's own work weighs more and a run stays short):
  * ``gray 1024``: one 1024x1024 uint16 plane, 1-channel model (many 256-px tiles);
  * ``rgb 512``: one 512x512x3 uint8 photo, 3-channel model;
  * ``stack 32x96``: 32 planes of 96x96 uint16 (many small planes: per-plane overhead).

Usage: python benchmarks/bench_engine_refactor.py --before /tmp/before/src [--after SRC] [--rounds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "gray 1024": {"shape": (1024, 1024), "dtype": "uint16", "in_chn": 1, "axes": "YX"},
    "rgb 512": {"shape": (512, 512, 3), "dtype": "uint8", "in_chn": 3, "axes": "YXC"},
    "stack 32x96": {"shape": (32, 96, 96), "dtype": "uint16", "in_chn": 1, "axes": "ZYX"},
}


def worker(name: str, repeats: int, out_file: str) -> None:
    """Time one workload in this process (the engine on sys.path) and save the output."""
    import numpy as np
    import torch

    from napari_hinet import Restorer
    from napari_hinet.model import HINet

    w = WORKLOADS[name]
    torch.manual_seed(0)
    net = HINet(in_chn=w["in_chn"], wf=8, depth=4).eval()
    net.metadata = {"name": "bench", "patch_size": 256, "normalization": "percentile"}
    rng = np.random.default_rng(0)
    high = 255 if w["dtype"] == "uint8" else 4000
    image = rng.integers(0, high, w["shape"]).astype(w["dtype"])
    restorer = Restorer(net, device="cpu", precision="fp32", compile="off")
    in_net = [0.0, 0.0]  # start of the current forward, seconds inside forwards

    def pre(module, args):
        in_net[0] = time.perf_counter()

    def post(module, args, output):
        in_net[1] += time.perf_counter() - in_net[0]

    restorer.net.register_forward_pre_hook(pre)
    restorer.net.register_forward_hook(post)
    result = restorer.restore(image, axes=w["axes"], out_dtype="float32")  # warm-up
    times, overheads = [], []
    for _ in range(repeats):
        in_net[1] = 0.0
        start = time.perf_counter()
        restorer.restore(image, axes=w["axes"], out_dtype="float32")
        times.append(time.perf_counter() - start)
        overheads.append(times[-1] - in_net[1])  # the engine's own work: all but the network forwards
    np.save(out_file, result)
    print(json.dumps({"times": times, "overheads": overheads}))


def run_side(src: Path, name: str, repeats: int, out_file: Path) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, __file__, "--worker", name, "--repeats", str(repeats), "--out", str(out_file)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd="/tmp")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="src folder of the older engine")
    parser.add_argument("--after", type=Path, default=ROOT / "src", help="src folder of the newer engine")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker")
    parser.add_argument("--out")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeats, args.out)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from _engine_common import load_average, print_table, write_json

    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    times: dict[tuple[str, str], list[float]] = {(s, w): [] for s in sides for w in WORKLOADS}
    overheads: dict[tuple[str, str], list[float]] = {(s, w): [] for s in sides for w in WORKLOADS}
    load_start = load_average()
    scratch = Path("/tmp/bench_engine_refactor")
    scratch.mkdir(exist_ok=True)
    for _ in range(args.rounds):
        for name in WORKLOADS:
            for side, src in sides.items():
                out = scratch / f"{side}-{name.replace(' ', '_')}.npy"
                got = run_side(src, name, args.repeats, out)
                times[(side, name)] += got["times"]
                overheads[(side, name)] += got["overheads"]
    rows = []
    for name in WORKLOADS:
        before = statistics.median(times[("before", name)])
        after = statistics.median(times[("after", name)])
        a = np.load(scratch / f"before-{name.replace(' ', '_')}.npy")
        b = np.load(scratch / f"after-{name.replace(' ', '_')}.npy")
        rows.append(
            {
                "workload": name,
                "before_s": round(before, 3),
                "after_s": round(after, 3),
                "after/before": round(after / before, 3),
                "before_min_s": round(min(times[("before", name)]), 3),
                "after_min_s": round(min(times[("after", name)]), 3),
                "before_engine_s": round(statistics.median(overheads[("before", name)]), 3),
                "after_engine_s": round(statistics.median(overheads[("after", name)]), 3),
                "max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()),
            }
        )
    print(f"load average at start {load_start}, at end {load_average()}")
    print_table(
        rows,
        [
            "workload",
            "before_s",
            "after_s",
            "after/before",
            "before_min_s",
            "after_min_s",
            "before_engine_s",
            "after_engine_s",
            "max_abs_diff",
        ],
    )
    write_json(
        "engine_refactor",
        {
            "before": str(args.before),
            "after": str(args.after),
            "rounds": args.rounds,
            "repeats": args.repeats,
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "rows": rows,
            "raw_seconds": {f"{s}/{w}": t for (s, w), t in times.items()},
            "raw_engine_seconds": {f"{s}/{w}": t for (s, w), t in overheads.items()},
        },
        args.json,
    )


if __name__ == "__main__":
    main()
