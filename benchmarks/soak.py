"""Soak test (issue 15): repeated restore() calls and a CLI batch killed at random moments.

Part 1 calls ``napari_hinet.restore`` ``--calls`` times (default 200) on a small
image and records the resident memory (RSS) after each call: a leak shows as
steady growth after the first calls. Part 2 runs ``napari-hinet restore`` on a
folder again and again, killing it after a random delay with SIGKILL, SIGTERM
or SIGINT (seeded), then checks the output folder: every visible output must be
a complete, readable image of the input's shape (a *partial file* would be a
visible output that is not), and hidden temporaries left by SIGKILL must be
removed by the next run. A last run without a kill must finish with exit 0.

    .venv/bin/python benchmarks/soak.py              # table + results/soak.json
    .venv/bin/python benchmarks/soak.py --calls 20 --rounds 2   # quick
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _engine_common import machine, write_json

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def soak_restore(calls: int, size: int) -> dict:
    import napari_hinet

    rng = np.random.default_rng(0)
    image = rng.integers(100, 1100, (size, size), dtype=np.uint16)
    rss, times = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        out = napari_hinet.restore(image, task="denoise", device="cpu")
        times.append(time.perf_counter() - t0)
        assert out.shape == image.shape and out.dtype == image.dtype
        rss.append(_rss_mb())
    # RSS moves up and down by ~100 MB between calls (each restore() loads the model; the allocator
    # keeps freed pages for a while), so growth is judged on windows: the median and the peak of
    # calls 11-60 against the last 50 calls, and a least-squares slope over calls 11..N.
    early, late = np.array(rss[10:60]), np.array(rss[-50:])
    xs = np.arange(10, calls)
    slope = float(np.polyfit(xs, np.array(rss[10:]), 1)[0]) if calls > 20 else 0.0
    return {
        "calls": calls,
        "image": f"{size}x{size} uint16, task denoise (hinet-denoise-fluo), CPU",
        "rss_mb_after_first": round(rss[0], 1),
        "rss_mb_median_calls_11_60": round(float(np.median(early)), 1),
        "rss_mb_median_last_50": round(float(np.median(late)), 1),
        "rss_mb_peak_calls_11_60": round(float(early.max()), 1),
        "rss_mb_peak_last_50": round(float(late.max()), 1),
        "rss_slope_kb_per_call_after_10": round(1000 * slope, 1),
        "median_call_s": round(float(np.median(times)), 3),
        "rss_mb_every_10": [round(r, 1) for r in rss[::10]],
    }


def _check_outputs(src: Path, out: Path) -> dict:
    import tifffile

    visible, hidden, bad = [], [], []
    if out.is_dir():
        for p in out.iterdir():
            (hidden if p.name.startswith(".") else visible).append(p.name)
    for name in visible:
        try:
            data = tifffile.imread(out / name)
            if data.shape != tifffile.imread(src / name).shape:
                bad.append(name)
        except Exception:  # noqa: BLE001 (any unreadable output is a partial file)
            bad.append(name)
    return {"complete": len(visible) - len(bad), "partial_visible": bad, "hidden_temporaries": len(hidden)}


def soak_cli(rounds: int, files: int, size: int, seed: int, workdir: Path) -> dict:
    import tifffile

    rng = np.random.default_rng(seed)
    src, out = workdir / "in", workdir / "out"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        tifffile.imwrite(src / f"img{i:02d}.tif", rng.integers(100, 1100, (size, size), dtype=np.uint16))
    cmd = [sys.executable, "-m", "napari_hinet.cli", "restore", str(src), "-o", str(out), "--task", "denoise"]
    cmd += ["--device", "cpu", "--skip-existing", "--no-progress"]
    log = []
    for r in range(rounds):
        sig = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT][int(rng.integers(3))]
        delay = float(rng.uniform(2.0, 12.0))  # a kill during start-up (before the handler) counts too
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
        text, _ = proc.communicate(timeout=120)
        state = _check_outputs(src, out)
        log.append(
            {"round": r, "signal": sig.name, "after_s": round(delay, 1), "exit": proc.returncode, **state}
        )
        print(log[-1], flush=True)
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    state = _check_outputs(src, out)
    return {
        "files": files,
        "image": f"{size}x{size} uint16",
        "rounds": log,
        "final_exit": final.returncode,
        "final": state,
        "partial_files_seen": sum(len(x["partial_visible"]) for x in log) + len(state["partial_visible"]),
        "final_tail": final.stdout.strip().splitlines()[-1:] if final.stdout else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--cli-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/napari-hinet-soak")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    start = time.perf_counter()
    restore_part = soak_restore(args.calls, args.size)
    print(restore_part, flush=True)
    cli_part = soak_cli(args.rounds, args.files, args.cli_size, args.seed, Path(args.workdir))
    result = {
        "what": "restore() called repeatedly (RSS growth) and a CLI batch killed at random moments "
        "(SIGKILL/SIGTERM/SIGINT, --skip-existing reruns): partial files and temporaries",
        "command": "benchmarks/soak.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "seconds": round(time.perf_counter() - start, 1),
        "restore": restore_part,
        "cli": cli_part,
    }
    write_json("soak", result)
    print(
        f"restore x{args.calls}: RSS median {restore_part['rss_mb_median_calls_11_60']} MB (calls 11-60) -> "
        f"{restore_part['rss_mb_median_last_50']} MB (last 50), slope "
        f"{restore_part['rss_slope_kb_per_call_after_10']} kB/call; CLI: "
        f"{len(cli_part['rounds'])} killed runs, partial files seen: {cli_part['partial_files_seen']}, "
        f"final exit {cli_part['final_exit']}, complete {cli_part['final']['complete']}/{args.files}, "
        f"temporaries left {cli_part['final']['hidden_temporaries']}"
    )
    ok = cli_part["partial_files_seen"] == 0 and cli_part["final_exit"] == 0
    ok = ok and cli_part["final"]["complete"] == args.files and cli_part["final"]["hidden_temporaries"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
