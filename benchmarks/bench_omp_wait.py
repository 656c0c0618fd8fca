"""Does the Python API stall under CPU contention? OpenMP wait policy, measured (issue 15).

torch's OpenMP threads busy-wait (spin) between parallel regions by default. When
other processes share the cores, a spinning thread holds a core that the thread it
waits for needs, and small forward passes took seconds. ``import napari_hinet``
sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it, which works only if it
happens before torch is first imported. This script times ``napari_hinet.restore``
in fresh processes, with two busy-looping processes competing for the cores:

* ``torch first``: ``import torch`` before ``napari_hinet`` with the variable unset
  (OpenMP's default policy: what the API did before issue 15);
* ``napari_hinet first``: the package sets the passive policy before torch loads;
* ``ACTIVE by the user``: the user's explicit value is kept (for reference).

    /work/tools/paused_training.sh .venv/bin/python benchmarks/bench_omp_wait.py [CALLS] [python|torch]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _engine_common import machine, print_table, write_json

CHILD = r"""
import json, sys, time
order = sys.argv[1]
if order == "torch":
    import torch
import napari_hinet, numpy as np, os
import torch
image = np.random.default_rng(0).integers(100, 1100, (256, 256), dtype=np.uint16)
restorer = napari_hinet.Restorer(task="denoise", device="cpu")
restorer.restore(image)  # warm-up
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    restorer.restore(image)
    times.append(time.perf_counter() - t0)
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads(), "times": times}))
"""

DEFAULT = ("torch first (policy unset: OpenMP default)", "torch", None)
PASSIVE = ("napari_hinet first (sets PASSIVE)", "package", None)
ACTIVE = ("ACTIVE set by the user (kept)", "package", "ACTIVE")
#: interleaved, so that changes of the machine's load hit every case alike
CASES = [DEFAULT, PASSIVE, ACTIVE, PASSIVE, DEFAULT, ACTIVE, DEFAULT, PASSIVE, ACTIVE]


#: competitors: two pure-Python busy loops, or one torch process running 2-thread convolutions
#: (OpenMP default policy), as when napari, a training job and a script share the cores
HOGS = {
    "python": [[sys.executable, "-c", "while True: pass"]] * 2,
    "torch": [
        [
            sys.executable,
            "-c",
            "import torch; torch.set_num_threads(2); c = torch.nn.Conv2d(16, 16, 3, padding=1); "
            "x = torch.randn(1, 16, 128, 128)\nwith torch.no_grad():\n    while True: c(x)",
        ]
    ],
}


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    hog = sys.argv[2] if len(sys.argv) > 2 else "python"
    env_hog = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    procs = [subprocess.Popen(cmd, env=env_hog) for cmd in HOGS[hog]]
    rows = []
    try:
        time.sleep(1.0)
        for label, order, value in CASES:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if value is not None:
                env["OMP_WAIT_POLICY"] = value
            out = subprocess.run(
                [sys.executable, "-c", CHILD, order, str(repeats)],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            times = sorted(data["times"])
            rows.append(
                {
                    "case": label,
                    "env_after_import": data["policy"],
                    "threads": data["threads"],
                    "median_s": round(times[len(times) // 2], 3),
                    "max_s": round(times[-1], 3),
                    "times_s": [round(t, 3) for t in data["times"]],
                }
            )
            print(rows[-1], flush=True)
    finally:
        for proc in procs:
            proc.kill()
    summary = []
    for label, _, _ in (DEFAULT, PASSIVE, ACTIVE):
        times = sorted(t for r in rows if r["case"] == label for t in r["times_s"])
        summary.append(
            {"case": label, "calls": len(times), "median_s": times[len(times) // 2], "max_s": times[-1]}
        )
    print_table(rows, ["case", "env_after_import", "threads", "median_s", "max_s"])
    print_table(summary, ["case", "calls", "median_s", "max_s"])
    write_json(
        f"omp_wait_{hog}",
        {
            "what": "napari_hinet.Restorer(task='denoise').restore() of a 256x256 uint16 image, CPU, "
            f"{repeats} calls after a warm-up, competing with {hog} busy processes ({HOGS[hog]})",
            "command": "benchmarks/bench_omp_wait.py " + " ".join(sys.argv[1:]),
            "machine": machine(),
            "summary": summary,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
