"""OpenVINO backend: agreement with torch, disk cache, precision check, fallbacks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_hinet.engine.openvino_backend import (
    WithFallback,
    auto_wants_openvino,
    openvino_available,
    prepare,
    resolve_backend,
)
from napari_hinet.model import HINet, run_any_size
from napari_hinet.model.tlc import set_statistics

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
#: float32 OpenVINO vs torch: both are float32 convolutions summed in different orders;
#: measured 2e-6 max abs on these models, 1e-4 leaves room for other CPUs' kernels.
F32_TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HINET_CACHE_DIR", str(tmp_path / "cache"))


def _model(stats: str = "global") -> HINet:
    torch.manual_seed(0)
    model = HINet(in_chn=1, wf=4, depth=3).eval()
    return set_statistics(model, stats, patch_size=32)


def _torch(model: HINet, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return run_any_size(model, torch.from_numpy(batch)).numpy()


@needs_openvino
@pytest.mark.parametrize(
    ("stats", "shapes"),
    [
        ("global", [(2, 1, 45, 37)]),
        ("local", [(2, 1, 45, 37), (1, 1, 20, 9)]),  # the dynamic graph and an own-shape graph
    ],
)
def test_fp32_matches_torch_on_odd_and_small_sizes(stats: str, shapes: list):
    model = _model(stats)
    forward = prepare(model, "fp32", threads=1)
    rng = np.random.default_rng(0)
    for shape in shapes:
        batch = rng.random(shape, dtype=np.float32)
        out = forward(batch)
        assert out.shape == batch.shape and out.dtype == np.float32
        assert np.abs(out - _torch(model, batch)).max() < F32_TOLERANCE
    assert forward.precision == "fp32" and forward.precision_check is None


@needs_openvino
def test_batches_split_between_streams_come_back_in_order():
    # rule 4: with 2 threads a batch of several tiles runs on OpenVINO's throughput streams,
    # each on a part of the batch; a single tile at that shape then runs on one of them
    model = _model()
    forward = prepare(model, "fp32", threads=2)
    rng = np.random.default_rng(1)
    for n in (5, 1, 2):
        batch = rng.random((n, 1, 40, 48), dtype=np.float32)
        out = forward(batch)
        assert out.shape == batch.shape
        assert np.abs(out - _torch(model, batch)).max() < F32_TOLERANCE


@needs_openvino
def test_converted_graph_is_read_back_from_the_disk_cache(monkeypatch, tmp_path):
    import openvino

    model = _model("local")
    batch = np.random.default_rng(1).random((1, 1, 48, 48), dtype=np.float32)
    first = prepare(model, "fp32", threads=1)
    expected = first(batch)
    assert list((tmp_path / "cache" / "openvino").glob(f"{first.key}-dyn.xml"))

    def refuse(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(openvino, "convert_model", refuse)
    again = prepare(model, "fp32", threads=1)
    assert again.key == first.key
    assert np.array_equal(again(batch), expected)
    other = _model("global")  # other statistics: another key, so it must convert
    with pytest.raises(AssertionError, match="converted again"):
        prepare(other, "fp32", threads=1)(batch)


@needs_openvino
def test_auto_precision_runs_the_self_check_where_bf16_exists():
    import openvino

    forward = prepare(_model(), "auto", threads=1)
    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        check = forward.precision_check
        assert check is not None and check["precision"] == "bf16"
        assert forward.precision == ("bf16" if check["passed"] else "fp32")
        assert check["passed"] == (check["psnr_db"] >= 45.0)
    else:
        assert forward.precision == "fp32"


@needs_openvino
def test_a_failing_conversion_falls_back_to_torch_with_a_warning(monkeypatch):
    import openvino

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operation")

    model = _model()
    forward = prepare(model, "fp32", threads=1)  # nothing converted until the first batch
    monkeypatch.setattr(openvino, "convert_model", broken)
    runner = WithFallback(forward, lambda b: _torch(model, b))
    batch = np.random.default_rng(2).random((1, 1, 40, 40), dtype=np.float32)
    with pytest.warns(UserWarning, match="OpenVINO failed .*unsupported operation.*running torch"):
        out = runner(batch)
    assert runner.active == "fallback"
    assert np.array_equal(out, _torch(model, batch))


def test_missing_openvino_resolves_to_torch():
    code = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["openvino"] = None  # import openvino now raises ImportError
        import torch
        from napari_hinet.engine.openvino_backend import openvino_available, resolve_backend
        assert not openvino_available()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_backend("auto", torch.device("cpu")) == "torch"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resolve_backend("openvino", torch.device("cpu")) == "torch"
        assert any("pip install openvino" in str(w.message) for w in caught), caught
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_backend_choice_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cuda) == "torch"
    assert resolve_backend("auto", cpu) == ("auto" if openvino_available() else "torch")  # decided per run
    assert resolve_backend("openvino", cpu) == ("openvino" if openvino_available() else "torch")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("openvino", cuda)
    with pytest.raises(ValueError, match="'auto', 'torch', 'openvino'|auto, torch, openvino"):
        resolve_backend("onnx", cpu)


# ---------------------------------------------------------------- through the engine
FP32 = {"device": "cpu", "precision": "fp32", "compile": "off"}


def _engine_model() -> HINet:
    model = _model()
    model.metadata = {"name": "tiny-gray", "patch_size": 32, "normalization": "percentile"}
    return model


def test_auto_wants_openvino_for_work_of_a_megapixel_at_width_16():
    from napari_hinet.metadata import ModelMetadata

    def width(wf: int) -> ModelMetadata:
        return ModelMetadata(config={"in_chn": 3, "wf": wf, "depth": 4})

    assert not auto_wants_openvino(width(16), 999_999)
    assert auto_wants_openvino(width(16), 1024 * 1024)
    assert auto_wants_openvino(width(64), 256 * 256)  # one official-size tile is as much work
    assert not auto_wants_openvino(width(4), 4 * 1024 * 1024)


@needs_openvino
def test_auto_runs_openvino_for_large_runs_and_torch_for_small_ones(monkeypatch):
    from napari_hinet import Restorer
    from napari_hinet.engine import openvino_backend

    monkeypatch.setattr(openvino_backend, "AUTO_MIN_WORK", 200 * 200 * (4 / 16) ** 2)  # our wf=4 model
    r = Restorer(_engine_model(), **FP32)  # backend="auto"
    small = np.random.default_rng(5).integers(0, 4000, (90, 70), dtype=np.uint16)
    large = np.random.default_rng(6).integers(0, 4000, (240, 230), dtype=np.uint16)
    a = r.restore(small, out_dtype="float32")
    assert r.backend == "torch"  # a small run never pays OpenVINO's start
    b = r.restore(large, out_dtype="float32")
    assert r.backend == "openvino" and "openvino" in r.describe()
    assert r.restore(small, out_dtype="float32").shape == small.shape  # started once, used from then on
    assert r.backend == "openvino"
    torch_path = Restorer(_engine_model(), backend="torch", **FP32)
    assert np.abs(a - torch_path.restore(small, out_dtype="float32")).max() == 0
    assert np.abs(b - torch_path.restore(large, out_dtype="float32")).max() < 1e-3 * 4000


@needs_openvino
def test_auto_starts_openvino_before_the_first_progress_report(monkeypatch):
    # converting and compiling take seconds: a progress bar must not sit at "0 of N" meanwhile
    from napari_hinet import Restorer
    from napari_hinet.engine import openvino_backend

    monkeypatch.setattr(openvino_backend, "AUTO_MIN_WORK", 200 * 200 * (4 / 16) ** 2)
    r = Restorer(_engine_model(), **FP32)
    large = np.random.default_rng(6).integers(0, 4000, (240, 230), dtype=np.uint16)
    reports = []
    r.restore(large, progress=lambda done, total: reports.append((done, r.backend)))
    assert reports[0] == (0, "openvino") and len(reports) > 2


@needs_openvino
def test_engine_openvino_matches_torch():
    from napari_hinet import Restorer

    image = np.random.default_rng(3).integers(0, 4000, (90, 70), dtype=np.uint16)
    ov = Restorer(_engine_model(), backend="openvino", **FP32)
    torch_path = Restorer(_engine_model(), backend="torch", **FP32)
    assert (ov.backend, torch_path.backend) == ("openvino", "torch")
    assert "openvino" in ov.describe()
    a = ov.restore(image, out_dtype="float32")
    b = torch_path.restore(image, out_dtype="float32")
    assert np.abs(a - b).max() < 1e-3 * 4000  # F32 agreement, in data units (percentile range ~4000)


@needs_openvino
def test_local_statistics_in_the_engine_use_large_tiles_and_run_in_openvino():
    from napari_hinet import Restorer

    image = np.random.default_rng(4).integers(0, 4000, (600, 100), dtype=np.uint16)
    ov = Restorer(_engine_model(), stats="local", backend="openvino", **FP32)
    ref = Restorer(_engine_model(), stats="local", backend="torch", **FP32)
    assert ov.stats == "local" and ov.statistics["windows"] == [32, 16, 8]
    assert ov.plan(image.shape)["tile"] == 512  # LOCAL_TILE: larger than the 32-px patch
    assert Restorer(_engine_model(), backend="torch", **FP32).plan(image.shape)["tile"] == 32
    a, b = ov.restore(image, out_dtype="float32"), ref.restore(image, out_dtype="float32")
    assert np.abs(a - b).max() < 1e-3 * 4000


@needs_openvino
def test_engine_falls_back_to_torch_when_openvino_fails(monkeypatch):
    import openvino

    from napari_hinet import Restorer

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(openvino, "convert_model", broken)
    image = np.random.default_rng(5).integers(0, 4000, (64, 64), dtype=np.uint16)
    r = Restorer(_engine_model(), backend="openvino", **FP32)
    with pytest.warns(UserWarning, match="OpenVINO failed"):
        out = r.restore(image)
    assert r.backend == "torch"
    np.testing.assert_array_equal(out, Restorer(_engine_model(), backend="torch", **FP32).restore(image))


@needs_openvino
def test_failing_bf16_self_check_gives_fp32_with_a_warning(monkeypatch):
    import openvino

    from napari_hinet.engine import openvino_backend

    if "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("no bf16 in OpenVINO on this CPU")
    monkeypatch.setattr(openvino_backend, "PRECISION_MIN_PSNR_DB", 500.0)
    with pytest.warns(UserWarning, match="using fp32"):
        forward = prepare(_model(), "auto", threads=1)
    assert forward.precision == "fp32" and not forward.precision_check["passed"]


@needs_openvino
@pytest.mark.slow
def test_dask_workers_convert_once_per_process():
    da = pytest.importorskip("dask.array")
    from napari_hinet import restore
    from napari_hinet.engine import cache

    cache.clear_cache()
    image = np.random.default_rng(6).integers(0, 4000, (3, 100, 90), dtype=np.uint16)
    before = cache.LOADS
    lazy_out = restore(
        da.from_array(image, chunks=(1, 50, 45)), _engine_model(), axes="ZYX", backend="openvino", **FP32
    )
    result = lazy_out.compute(scheduler="threads")
    assert cache.LOADS - before == 1  # one predictor (one OpenVINO model) for the planner and every block
    predictors = list(cache._CACHE.values())
    assert [p.backend for p in predictors] == ["openvino"]
    expected = restore(image, _engine_model(), axes="ZYX", backend="openvino", **FP32)
    assert np.abs(result.astype(np.int64) - expected.astype(np.int64)).max() <= 1
    cache.clear_cache()


def test_settings_declare_backend_and_stats():
    from napari_hinet.settings import MODEL_FIELDS, RestoreSettings

    settings = RestoreSettings(backend="torch", stats="local")
    assert settings.model_kwargs()["backend"] == "torch" and settings.model_kwargs()["stats"] == "local"
    assert {"backend", "stats"} <= set(MODEL_FIELDS)
    with pytest.raises(ValueError, match="backend"):
        RestoreSettings(backend="onnx")
    with pytest.raises(ValueError, match="stats"):
        RestoreSettings(stats="windowed")


@needs_openvino
def test_conversion_sends_no_telemetry(monkeypatch):
    import openvino_telemetry

    sent = []

    def record(self, *args, **kwargs):
        sent.append(args)

    for name in ("send_event", "send_error", "send_stack_trace", "start_session"):
        monkeypatch.setattr(openvino_telemetry.Telemetry, name, record)
    forward = prepare(_model(), "fp32", threads=1)
    forward(np.zeros((1, 1, 40, 40), np.float32))  # converts
    assert sent == []


def test_provenance_records_backend_and_stats():
    from napari_hinet import Restorer
    from napari_hinet.layers import Region, provenance, run_record
    from napari_hinet.settings import RestoreSettings

    r = Restorer(_engine_model(), backend="torch", stats="local", **FP32)
    settings = RestoreSettings(backend="torch", stats="local")
    options = run_record(r, settings, (600, 80), "YX")
    assert (options["backend"], options["stats"], options["tile"]) == ("torch", "local", 512)
    meta = provenance(
        model_metadata=r.info,
        task="denoise",
        source_layer="x",
        region=Region((), slice(0, 600), slice(0, 80), "image"),
        options=options,
        device="cpu",
        precision=r.precision,
        seconds=1.0,
        pixels=48000,
    )
    assert meta["backend"] == "torch" and meta["stats"] == "local"
