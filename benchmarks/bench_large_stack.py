"""Larger than RAM: restore a synthetic uint16 stack, made lazily with dask, into zarr.

The stack (``--size`` GB, planes of ``--plane`` x ``--plane`` pixels) is never in
memory: each chunk is generated when a task needs it, restored block by block
(:func:`napari_hinet.engine.lazy.restore_dask`) and written to a zarr array of
the full size. ``--measure`` GB of it (the first planes) are actually computed,
so that a 10 GB graph can be checked on a slow machine; the time for the whole
stack is extrapolated from the measured part (said so in the output).

Reported: peak resident memory (``VmHWM``, else ``ru_maxrss``) of every process that did work,
the resident memory before the run (imports + model), throughput in megapixels
and input megabytes per second, and the extrapolated time for the full stack.
Target: peak RSS <= 3 GB per process.

Usage:
    python benchmarks/bench_large_stack.py                              # 10 GB graph, all of it
    python benchmarks/bench_large_stack.py --size 10 --measure 0.25     # 10 GB graph, 0.25 GB computed
    python benchmarks/bench_large_stack.py --scheduler distributed --workers 2
    python benchmarks/bench_large_stack.py --size 0.1 --plane 1024 --model wf2d1 --verify   # CI-sized

Models (random weights, the speed of the model is what matters here):
``wf8d3`` = HINet(in_chn=1, wf=8, depth=3) (default), ``wf2d1`` = HINet(wf=2, depth=1)
(a near-free network, for tests), or a path to a weights file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GB = 1024**3


def _status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (Linux) in bytes, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    ``VmHWM`` from ``/proc/self/status`` where available: unlike ``ru_maxrss``, it
    is not inherited from the parent across fork + exec (a child of a large
    process would otherwise report the parent's size).
    """
    hwm = _status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    rss = _status_bytes("VmRSS")
    return rss if rss is not None else peak_rss_bytes()


def synthetic_block(block_info: dict | None = None, *, seed: int = 0) -> np.ndarray:
    """One chunk of the synthetic stack: smooth blobs plus Poisson-like noise, uint16, deterministic."""
    info = block_info[None]
    (z0, z1), (y0, y1), (x0, x1) = info["array-location"]
    rng = np.random.default_rng([seed, z0, y0, x0])
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    out = np.empty((z1 - z0, y1 - y0, x1 - x0), np.uint16)
    for k, z in enumerate(range(z0, z1)):
        signal = 800 + 600 * np.sin(yy / (37.0 + z % 7)) * np.cos(xx / 53.0)
        noisy = signal + rng.normal(0.0, 120.0, signal.shape).astype(np.float32)
        out[k] = np.clip(noisy, 0, 65535).astype(np.uint16)
    return out


def synthetic_stack(size_gb: float, plane: int, chunk: int, seed: int = 0) -> Any:
    """A lazy (Z, plane, plane) uint16 dask array of about ``size_gb`` GB."""
    import dask.array as da

    z = max(1, math.ceil(size_gb * GB / (plane * plane * 2)))
    return da.map_blocks(
        synthetic_block,
        chunks=((1,) * z, _split(plane, chunk), _split(plane, chunk)),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0), np.uint16),
        seed=seed,
    )


def _split(n: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, n - s) for s in range(0, n, chunk))


def make_model(spec: str, folder: Path) -> str:
    """A path to the model weights: ``wf8d3``/``wf2d1`` are saved with seeded random weights."""
    if spec not in ("wf8d3", "wf2d1"):
        return spec
    import torch

    from napari_hinet.checkpoints import save_model
    from napari_hinet.model import HINet

    wf, depth = (8, 3) if spec == "wf8d3" else (2, 1)
    torch.manual_seed(0)
    path = folder / f"bench-{spec}.safetensors"
    save_model(
        HINet(in_chn=1, wf=wf, depth=depth),
        path,
        task="denoise",
        patch_size=256,
        normalization="percentile",
        channels="gray",
        description=f"random weights, benchmark only ({spec})",
    )
    return str(path)


def _worker_peaks(client: Any) -> dict[str, int]:
    return client.run(peak_rss_bytes)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import dask
    import dask.array as da
    import torch
    import zarr

    from napari_hinet.engine.lazy import restore_dask

    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="hinet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(args.model, work)
    stack = synthetic_stack(args.size, args.plane, args.chunk)
    z, h, w = stack.shape
    measure = min(args.measure or args.size, args.size)
    n = min(z, max(1, math.ceil(measure * GB / (h * w * 2))))
    common = {"axes": "ZYX", "device": "cpu", "precision": args.precision, "compile": "off"}

    client = cluster = None
    if args.scheduler == "distributed":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=f"{args.memory_limit_gb}GB",
        )
        client = Client(cluster)
        client.run(lambda: __import__("torch").set_num_threads(1))
    result = restore_dask(stack, model, chunk_size=args.chunk, **common)
    target = zarr.create_array(
        str(work / "restored.zarr"),
        shape=stack.shape,
        chunks=(1, args.chunk, args.chunk),
        dtype="uint16",
        overwrite=True,
    )
    graph_tasks = len(result.__dask_graph__())
    # warm up: the first forward allocates the framework's work buffers; they are not per-stack memory
    from napari_hinet.engine import get_restorer

    warm = get_restorer(model, None, "cpu", args.precision, "off")
    warm.restore(np.zeros((2, min(h, 2 * args.chunk), min(w, 2 * args.chunk)), np.uint16), axes="ZYX")
    rss_before = current_rss_bytes()
    start = time.perf_counter()
    scheduler = {} if client is not None else {"scheduler": "threads", "num_workers": args.workers}
    with dask.config.set(**scheduler):
        da.store(result[:n], target, regions=(slice(0, n), slice(None), slice(None)), lock=False)
    seconds = time.perf_counter() - start
    peaks = {"main": peak_rss_bytes()}
    if client is not None:
        peaks.update({f"worker {k}": v for k, v in _worker_peaks(client).items()})

    verify = None
    if args.verify:
        from napari_hinet.engine import restore

        k = n - 1
        plane = np.asarray(stack[k : k + 1].compute(scheduler="sync"))
        reference = restore(plane, model, **common)
        diff = np.abs(reference.astype(np.int64) - np.asarray(target[k : k + 1]).astype(np.int64))
        verify = {"plane": k, "max_abs_diff": int(diff.max()), "pixels_differing": int((diff > 0).sum())}
    if client is not None:
        client.close()
        cluster.close()

    pixels = n * h * w
    report = {
        "stack_shape": [z, h, w],
        "stack_gb": z * h * w * 2 / GB,
        "measured_planes": n,
        "measured_gb": pixels * 2 / GB,
        "chunk": args.chunk,
        "model": args.model,
        "precision": args.precision,
        "scheduler": args.scheduler,
        "workers": args.workers,
        "torch_threads_per_process": args.threads,
        "graph_tasks_full_stack": graph_tasks,
        "seconds": seconds,
        "megapixels_per_s": pixels / seconds / 1e6,
        "input_mb_per_s": pixels * 2 / seconds / 2**20,
        "extrapolated_full_stack_hours": seconds * (z / n) / 3600,
        "extrapolated": n < z,
        "rss_before_run_gb": rss_before / GB,
        "peak_rss_gb": {k: v / GB for k, v in peaks.items()},
        "verify": verify,
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        },
        "output": str(work / "restored.zarr"),
    }
    if not args.keep and args.out is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return report


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("stack", f"{r['stack_shape']} uint16 = {r['stack_gb']:.2f} GB (lazy, never in memory)"),
        ("computed", f"{r['measured_planes']} planes = {r['measured_gb']:.3f} GB"),
        ("model", f"{r['model']}, {r['precision']}, {r['scheduler']} x {r['workers']}"),
        ("graph tasks (full stack)", str(r["graph_tasks_full_stack"])),
        ("wall time", f"{r['seconds']:.1f} s"),
        ("throughput", f"{r['megapixels_per_s']:.3f} MP/s = {r['input_mb_per_s']:.2f} MB/s of input"),
        (
            "full stack (extrapolated)" if r["extrapolated"] else "full stack",
            f"{r['extrapolated_full_stack_hours']:.2f} h",
        ),
        ("RSS before run", f"{r['rss_before_run_gb']:.3f} GB"),
    ]
    rows += [(f"peak RSS {k}", f"{v:.3f} GB") for k, v in r["peak_rss_gb"].items()]
    if r["verify"]:
        rows.append(
            (
                "plane vs in-memory",
                f"max |diff| {r['verify']['max_abs_diff']}, {r['verify']['pixels_differing']} pixels differ",
            )
        )
    rows.append(("load average after", str(r["machine"]["load_average_after"])))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=float, default=10.0, help="stack size in GB (default 10)")
    p.add_argument("--measure", type=float, help="GB actually computed, from the start (default: all)")
    p.add_argument("--plane", type=int, default=4096, help="plane edge in pixels (default 4096)")
    p.add_argument(
        "--chunk", type=int, default=2048, help="Y/X chunk and block edge in pixels (default 2048)"
    )
    p.add_argument("--model", default="wf8d3", help="wf8d3 (default), wf2d1 or a weights file")
    p.add_argument("--precision", default="fp32", help="fp32 (default), bf16 or auto")
    p.add_argument("--scheduler", choices=("threads", "distributed"), default="threads")
    p.add_argument("--workers", type=int, default=2, help="dask threads, or worker processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--memory-limit-gb", type=float, default=3.0, help="per distributed worker (default 3)")
    p.add_argument("--out", help="folder for the zarr output (default: a temporary folder, deleted)")
    p.add_argument("--keep", action="store_true", help="keep the temporary output")
    p.add_argument("--verify", action="store_true", help="compare the last computed plane with restore()")
    p.add_argument("--json", help="result file (default benchmarks/results/large_stack.json)")
    args = p.parse_args(argv)
    report = run(args)
    print_table(report)
    path = Path(args.json) if args.json else RESULTS / "large_stack.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
