"""Dask input: lazy, blockwise, equal to the in-memory result; model loaded once per process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

da = pytest.importorskip("dask.array")

from napari_hinet.engine import (  # noqa: E402
    Cancelled,
    cache,
    lazy,
    restore,
)
from napari_hinet.model import HINet  # noqa: E402

FP32 = {"device": "cpu", "precision": "fp32", "compile": "off"}


def tiny(in_chn: int = 1, normalization: str = "percentile", seed: int = 0) -> HINet:
    torch.manual_seed(seed)
    net = HINet(in_chn=in_chn, wf=8, depth=3)
    net.metadata = {"patch_size": 64, "normalization": normalization, "name": f"tiny{in_chn}"}
    return net


@pytest.fixture(autouse=True)
def _fresh_cache():
    lazy.clear_cache()
    yield
    lazy.clear_cache()


def test_result_is_lazy_and_has_input_shape_and_dtype():
    img = da.zeros((3, 100, 90), dtype=np.uint16, chunks=(1, 50, 45))
    out = restore(img, tiny(), axes="ZYX", **FP32)
    assert isinstance(out, da.Array)
    assert out.shape == img.shape and out.dtype == np.uint16
    # Y/X chunks grow to hold whole tiles; plane chunks are kept
    assert out.chunks[0] == (1, 1, 1)


@pytest.mark.parametrize("chunk_size", [64, 4096])
def test_equals_in_memory_bitwise_with_equal_batches(chunk_size):
    """Same tiles, weights and order: with one tile per forward on both sides the result is identical."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 4000, (2, 170, 150), dtype=np.uint16)
    net = tiny()
    ref = restore(img, net, axes="ZYX", batch_size=1, out_dtype="float32", **FP32)
    lz = lazy.restore_dask(
        da.from_array(img, chunks=(1, 60, 70)),
        net,
        axes="ZYX",
        batch_size=1,
        out_dtype="float32",
        chunk_size=chunk_size,
        **FP32,
    )
    np.testing.assert_array_equal(lz.compute(), ref)


def test_equals_in_memory_within_rounding_with_default_batches():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 4000, (1, 200, 170), dtype=np.uint16)
    net = tiny()
    ref = restore(img, net, axes="ZYX", **FP32)
    out = lazy.restore_dask(da.from_array(img, chunks=(1, 80, 80)), net, axes="ZYX", chunk_size=96, **FP32)
    diff = np.abs(out.compute().astype(np.int64) - ref.astype(np.int64))
    assert diff.max() <= 1  # a value at .5 may round the other way
    assert (diff > 0).mean() < 1e-3
    ref_f = restore(img, net, axes="ZYX", out_dtype="float32", **FP32)
    out_f = lazy.restore_dask(
        da.from_array(img, chunks=(1, 80, 80)), net, axes="ZYX", chunk_size=96, out_dtype="float32", **FP32
    ).compute()
    np.testing.assert_allclose(out_f, ref_f, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "kind,kwargs",
    [
        ("stack", {"normalize_per": "stack", "normalization": "percentile"}),
        ("official", {"tiling": "official"}),
        ("float-auto", {}),
        ("none", {"tiling": "none"}),
        ("ensemble", {"ensemble": True}),
    ],
)
def test_modes_equal_in_memory(kind, kwargs):
    rng = np.random.default_rng(3)
    if kind == "float-auto":
        img = rng.random((2, 150, 140), dtype=np.float32) * 3.0  # not in [0, 1]: auto picks percentile
    else:
        img = rng.integers(0, 60000, (2, 150, 140), dtype=np.uint16)
    net = tiny()
    ref = restore(img, net, axes="ZYX", batch_size=1, **kwargs, **FP32)
    out = lazy.restore_dask(
        da.from_array(img, chunks=(1, 75, 70)), net, axes="ZYX", batch_size=1, chunk_size=80, **kwargs, **FP32
    )
    np.testing.assert_array_equal(out.compute(), ref)


def test_rgba_and_channels_equal_in_memory():
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 255, (130, 150, 4), dtype=np.uint8)
    net3 = tiny(3, "fixed")
    ref = restore(rgba, net3, batch_size=1, **FP32)
    out = lazy.restore_dask(
        da.from_array(rgba, chunks=(40, 40, 1)), net3, batch_size=1, chunk_size=70, **FP32
    )
    res = out.compute()
    np.testing.assert_array_equal(res, ref)
    np.testing.assert_array_equal(res[..., 3], rgba[..., 3])  # alpha untouched
    # independent channels (CYX) with a 3-channel model: replicated and averaged back
    cyx = rng.integers(0, 4000, (2, 120, 100), dtype=np.uint16)
    ref = restore(cyx, net3, axes="CYX", batch_size=1, **FP32)
    out = lazy.restore_dask(
        da.from_array(cyx, chunks=(1, 50, 50)), net3, axes="CYX", batch_size=1, chunk_size=64, **FP32
    )
    np.testing.assert_array_equal(out.compute(), ref)


def test_model_object_enters_the_graph_once_and_loads_once():
    img = np.random.default_rng(5).integers(0, 4000, (4, 120, 120), dtype=np.uint16)
    out = lazy.restore_dask(da.from_array(img, chunks=(1, 60, 60)), tiny(), axes="ZYX", chunk_size=64, **FP32)
    graph = dict(out.__dask_graph__())
    payloads = [
        k for k, v in graph.items() if isinstance(v, lazy.ModelPayload) or "ModelPayload" in repr(v)[:200]
    ]
    assert len(payloads) == 1
    before = cache.LOADS
    out.compute(scheduler="threads")
    assert cache.LOADS - before <= 1  # planned and computed with one cached Restorer


def test_zarr_in_zarr_out(tmp_path):
    import zarr

    img = np.random.default_rng(6).integers(0, 4000, (3, 140, 130), dtype=np.uint16)
    src = zarr.create_array(str(tmp_path / "in.zarr"), shape=img.shape, chunks=(1, 64, 64), dtype="uint16")
    src[...] = img
    net = tiny()
    lz = lazy.restore_dask(
        da.from_zarr(str(tmp_path / "in.zarr")), net, axes="ZYX", batch_size=1, chunk_size=64, **FP32
    )
    lz.to_zarr(str(tmp_path / "out.zarr"))
    ref = restore(img, net, axes="ZYX", batch_size=1, **FP32)
    np.testing.assert_array_equal(zarr.open(str(tmp_path / "out.zarr"), mode="r")[...], ref)


def test_out_with_progress_and_cancel(tmp_path):
    import threading

    import zarr

    img = np.random.default_rng(7).integers(0, 255, (4, 100, 100), dtype=np.uint8)
    net = tiny(1, "fixed")
    out = zarr.create_array(str(tmp_path / "o.zarr"), shape=img.shape, chunks=(1, 100, 100), dtype="uint8")
    calls = []
    result = lazy.restore_dask(
        da.from_array(img, chunks=(1, 100, 100)),
        net,
        axes="ZYX",
        out=out,
        progress=lambda d, t: calls.append((d, t)),
        batch_size=1,
        **FP32,
    )
    assert result is out
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] > 0
    np.testing.assert_array_equal(out[...], restore(img, net, axes="ZYX", batch_size=1, **FP32))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        lazy.restore_dask(
            da.from_array(img, chunks=(1, 100, 100)),
            net,
            axes="ZYX",
            out=np.empty_like(img),
            cancel=stop,
            **FP32,
        )


def test_lazy_errors_are_clear():
    with pytest.raises(ValueError, match="NaN or Inf"):
        bad = np.full((2, 70, 70), np.nan, np.float32)
        lazy.restore_dask(da.from_array(bad), tiny(), axes="ZYX", normalization="fixed", **FP32).compute()
    with pytest.raises(TypeError, match="Boolean"):
        lazy.restore_dask(da.zeros((70, 70), dtype=bool), tiny(), **FP32)
    with pytest.raises(ValueError, match="axes"):
        lazy.restore_dask(da.zeros((70, 70), dtype=np.uint8), tiny(), axes="ZYX", **FP32)


@pytest.mark.slow
def test_two_process_local_cluster_equals_in_memory(tmp_path):
    """2 worker processes: model by path, loaded at most once per worker, result equal, to_zarr works."""
    distributed = pytest.importorskip("distributed")
    import zarr

    from napari_hinet.checkpoints import save_model

    path = save_model(
        tiny(),
        tmp_path / "tiny.safetensors",
        task="denoise",
        patch_size=64,
        normalization="percentile",
        channels="gray",
    )
    img = np.random.default_rng(8).integers(0, 4000, (4, 200, 180), dtype=np.uint16)
    ref = restore(img, str(path), axes="ZYX", batch_size=1, **FP32)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cl:
        with distributed.Client(cl) as client:
            lz = lazy.restore_dask(
                da.from_array(img, chunks=(1, 100, 90)),
                str(path),
                axes="ZYX",
                batch_size=1,
                chunk_size=80,
                **FP32,
            )
            lz.to_zarr(str(tmp_path / "out.zarr"))
            loads = client.run(lambda: __import__("napari_hinet.engine.cache", fromlist=["LOADS"]).LOADS)
    assert len(loads) == 2 and all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1
    np.testing.assert_array_equal(zarr.open(str(tmp_path / "out.zarr"), mode="r")[...], ref)


@pytest.mark.slow
def test_large_stack_bounded_memory(tmp_path):
    """CI-sized benchmarks/bench_large_stack.py: lazy uint16 stacks streamed into zarr.

    Memory must not grow with the stack: a 4x larger stack (64 MB instead of 16 MB,
    i.e. 96 MB more input and output) may use only a little more memory, and the
    growth over the start stays below what holding input and output would take.
    """
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import zarr

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root / "src"), OMP_WAIT_POLICY="PASSIVE")

    def bench(size: str) -> dict:
        result_file = tmp_path / f"large-{size}.json"
        work = tmp_path / f"work-{size}"
        cmd = [
            sys.executable,
            str(root / "benchmarks" / "bench_large_stack.py"),
            "--size",
            size,
            "--plane",
            "1024",
            "--chunk",
            "512",
            "--model",
            "wf2d1",
            "--verify",
            "--out",
            str(work),
            "--json",
            str(result_file),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(result_file.read_text())
        assert report["measured_planes"] == report["stack_shape"][0]
        assert report["verify"]["max_abs_diff"] <= 1
        out = zarr.open(str(work / "restored.zarr"), mode="r")
        assert out.shape == tuple(report["stack_shape"]) and int(out[-1].max()) > 0  # last plane written
        report["growth"] = report["peak_rss_gb"]["main"] - report["rss_before_run_gb"]
        return report

    small, large = bench("0.015625"), bench("0.0625")
    facts = {
        k: (r["growth"], r["rss_before_run_gb"], r["peak_rss_gb"]["main"], r["seconds"])
        for k, r in (("small", small), ("large", large))
    }
    assert large["stack_gb"] == 4 * small["stack_gb"]
    assert large["growth"] - small["growth"] < 0.03, facts
    assert large["growth"] < 0.12, facts  # input + output of the large stack: 0.125 GB
