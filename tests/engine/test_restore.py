"""End-to-end tests of restore()/Restorer with tiny models (fp32 on the CPU unless said)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_hinet import Cancelled, Restorer, restore
from napari_hinet.engine.tiling import official_origins
from napari_hinet.model import HINet, run_any_size

CPU = {"device": "cpu", "precision": "fp32", "compile": "off"}


def _forward(model: HINet, x: np.ndarray) -> np.ndarray:
    """Whole-image out_2 of (C, H, W) float32."""
    with torch.inference_mode():
        return run_any_size(model, torch.from_numpy(x)[None])[0].numpy()


# ---------------------------------------------------------------- layouts
LAYOUTS = {
    "YX": (21, 27),
    "YXC": (21, 27, 3),
    "CYX": (2, 21, 27),
    "ZYX": (3, 21, 27),
    "TYX": (2, 21, 27),
    "TZYX": (2, 2, 21, 27),
    "TCZYX": (2, 2, 2, 21, 27),
    "ZYXC": (2, 21, 27, 3),
    "XY": (27, 21),
}


@pytest.mark.parametrize("axes", sorted(LAYOUTS))
def test_identity_model_returns_input_exactly(axes, identity, rng):
    data = rng.integers(0, 4096, LAYOUTS[axes]).astype(np.uint16)
    out = restore(data, identity, axes=axes, tile=16, overlap=4, **CPU)
    assert out.shape == data.shape and out.dtype == data.dtype
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("axes", ["ZYX", "TZYX", "TCZYX", "CYX"])
def test_planes_are_restored_independently(axes, tiny, rng):
    """Each plane (and channel) of a stack equals restoring that 2-D plane alone."""
    data = rng.integers(0, 255, LAYOUTS[axes]).astype(np.uint8)
    restorer = Restorer(tiny, **CPU)
    out = restorer.restore(data, axes=axes, tile=16, overlap=4, batch_size=3)
    flat_in = data.reshape(-1, *data.shape[-2:])
    flat_out = out.reshape(-1, *data.shape[-2:])
    for k in (0, len(flat_in) - 1):
        alone = restorer.restore(flat_in[k], axes="YX", tile=16, overlap=4)
        np.testing.assert_array_equal(flat_out[k], alone)


def test_guessed_axes_rgb(tiny, rng):
    rgb = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    np.testing.assert_array_equal(restore(rgb, tiny, **CPU), restore(rgb, tiny, axes="YXC", **CPU))


# ---------------------------------------------------------------- dtypes
@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float16, np.float32, np.float64]
)
def test_each_dtype_keeps_dtype_and_identity(dtype, identity, rng):
    if np.dtype(dtype).kind == "f":
        data = rng.random((33, 40)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -3000), min(info.max, 3000), (33, 40)).astype(dtype)
    out = restore(data, identity, tile=32, overlap=8, **CPU)
    assert out.dtype == data.dtype and out.shape == data.shape
    tol = {np.float16: 1e-3, np.float32: 1e-6, np.float64: 1e-6}.get(dtype, 0)
    np.testing.assert_allclose(out.astype(np.float64), data.astype(np.float64), atol=tol)


def test_out_dtype_float32_keeps_input_units(tiny, rng):
    data = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)
    f = restore(data, tiny, out_dtype="float32", **CPU)
    u = restore(data, tiny, **CPU)
    assert f.dtype == np.float32 and f.max() > 1.5  # not [0, 1]
    np.testing.assert_array_equal(np.rint(f).astype(np.uint8), u)


def test_fixed_normalisation_matches_official_io(tiny, rng):
    """uint8 RGB: /255, network, clamp, *255, round, as the official test code does."""
    img = rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)
    ours = restore(img, tiny, tiling="none", **CPU)
    ref = _forward(tiny, img.transpose(2, 0, 1).astype(np.float32) / 255.0).transpose(1, 2, 0)
    expected = np.rint(np.clip(ref, 0, 1) * 255).astype(np.uint8)
    diff = np.abs(ours.astype(int) - expected)
    assert diff.max() <= 1 and diff.mean() < 1e-3  # channels_last convs round differently, rarely


def test_percentile_stack_vs_plane(identity, rng):
    data = rng.integers(0, 4000, (3, 32, 32)).astype(np.uint16)
    data[1] *= 10
    for per in ("plane", "stack"):
        out = restore(data, identity, normalization="percentile", normalize_per=per, **CPU)
        np.testing.assert_array_equal(out, data)


# ---------------------------------------------------------------- sizes
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (7, 150), (33, 17), (150, 129)])
def test_small_and_odd_sizes(shape, tiny, rng):
    data = rng.random(shape).astype(np.float32)
    out = restore(data, tiny, tile=32, overlap=8, **CPU)
    assert out.shape == shape and np.isfinite(out).all()


def test_image_smaller_than_tile_is_one_padded_forward(tiny, rng):
    img = rng.random((3, 40, 50)).astype(np.float32)
    out = restore(img, tiny, axes="CYX", rgb=True, tile=256, normalization="fixed", **CPU)
    expected = np.clip(_forward(tiny, img), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


# ---------------------------------------------------------------- tiling
def test_official_tiling_reproduces_official_grids(tiny, rng):
    """Crops at the official origins, each run alone, uniformly averaged (official grids_inverse)."""
    h, w, c = 150, 140, 128  # same rule as crop 256 on 300x280
    img = rng.random((3, h, w)).astype(np.float32)
    ours = restore(img, tiny, axes="CYX", rgb=True, tiling="official", tile=c, normalization="fixed", **CPU)
    acc = np.zeros_like(img)
    count = np.zeros((h, w), np.float32)
    for y in official_origins(h, c):
        for x in official_origins(w, c):
            acc[:, y : y + c, x : x + c] += _forward(tiny, img[:, y : y + c, x : x + c])
            count[y : y + c, x : x + c] += 1
    np.testing.assert_allclose(ours, np.clip(acc / count, 0, 1), atol=2e-6)


def test_blend_close_to_whole_image_without_instance_norm(rng):
    """Without HIN the network is translation-equivariant away from tile borders, so blended
    tiles approach the whole-image result, and more overlap gets closer."""
    torch.manual_seed(0)
    model = HINet(wf=8, depth=2, hin_position_left=1, hin_position_right=0).eval()  # no HIN
    y, x = np.mgrid[0:160, 0:192]
    img = 0.5 + 0.25 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.05 * rng.standard_normal((160, 192))
    img = np.repeat(img[None].astype(np.float32), 3, axis=0)
    kw = dict(axes="CYX", rgb=True, normalization="fixed", tile=64, out_dtype="float32", **CPU)
    whole = restore(img, model, tiling="none", **kw)
    errors = {o: np.abs(restore(img, model, overlap=o, **kw) - whole).mean() for o in (0, 16, 32)}
    assert errors[32] < errors[0] / 3
    assert errors[32] < 2e-3


def test_batching_does_not_change_result(tiny, rng):
    img = rng.integers(0, 255, (100, 90, 3)).astype(np.uint8)
    a = restore(img, tiny, tile=32, overlap=8, batch_size=1, **CPU)
    b = restore(img, tiny, tile=32, overlap=8, batch_size=7, **CPU)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ---------------------------------------------------------------- channels
def test_rgba_alpha_passes_through(tiny, rng):
    img = rng.integers(0, 255, (40, 44, 4)).astype(np.uint8)
    out = restore(img, tiny, **CPU)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])
    np.testing.assert_array_equal(out[..., :3], restore(img[..., :3], tiny, **CPU))


def test_rgb_model_on_gray_replicates_and_averages(tiny, rng):
    gray = rng.random((40, 44)).astype(np.float32)
    out = restore(gray, tiny, normalization="fixed", **CPU)
    expected = np.clip(_forward(tiny, np.stack([gray] * 3)).mean(0), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_gray_model_on_rgb_runs_per_channel(tiny_gray, rng):
    img = rng.integers(0, 255, (40, 44, 3)).astype(np.uint8)
    out = restore(img, tiny_gray, **CPU)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], restore(img[..., c], tiny_gray, **CPU))


def test_user_model_is_not_modified(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    restore(np.zeros((32, 32, 3), np.uint8), tiny, device="cpu", precision="bf16")
    for k, v in tiny.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k]), k
    assert tiny.conv_01.weight.is_contiguous()


# ---------------------------------------------------------------- out=, zarr
def test_zarr_input_and_output(tiny, rng, tmp_path):
    zarr = pytest.importorskip("zarr")
    data = rng.integers(0, 4000, (3, 70, 90)).astype(np.uint16)
    src = zarr.create_array(tmp_path / "in.zarr", shape=data.shape, chunks=(1, 32, 32), dtype=data.dtype)
    src[:] = data
    dst = zarr.create_array(tmp_path / "out.zarr", shape=data.shape, chunks=(1, 32, 32), dtype=data.dtype)
    returned = restore(src, tiny, tile=32, overlap=8, out=dst, **CPU)
    assert returned is dst
    np.testing.assert_array_equal(dst[:], restore(data, tiny, tile=32, overlap=8, **CPU))


def test_out_shape_checked(tiny):
    with pytest.raises(ValueError, match="out has shape"):
        restore(np.zeros((8, 8), np.uint8), tiny, out=np.zeros((8, 9), np.uint8), **CPU)


# ---------------------------------------------------------------- progress and cancel
def test_progress_called_per_batch(tiny, rng):
    img = rng.integers(0, 255, (2, 100, 100)).astype(np.uint8)  # 2 planes x 3x3 tiles of 48
    calls = []
    restore(img, tiny, tile=48, overlap=12, batch_size=4, progress=lambda d, t: calls.append((d, t)), **CPU)
    total = 2 * 9
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert len(calls) == 1 + -(-total // 4)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cancel_raises_and_leaves_no_result(tiny, rng):
    img = rng.integers(0, 255, (3, 40, 40)).astype(np.uint8)
    stop = threading.Event()

    def progress(done, total):
        if done >= 1:
            stop.set()

    out = np.zeros_like(img)
    with pytest.raises(Cancelled) as info:
        restore(img, tiny, batch_size=1, progress=progress, cancel=stop, out=out, **CPU)
    assert info.value.planes_done == 1 and info.value.n_planes == 3
    assert out[0].any() and not out[1:].any()  # finished plane kept, later planes untouched


def test_cancel_callable_before_start(tiny):
    with pytest.raises(Cancelled):
        restore(np.zeros((40, 40), np.uint8), tiny, cancel=lambda: True, **CPU)


def test_iter_restore_generator(tiny, rng):
    img = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    r = Restorer(tiny, **CPU)
    gen = r.iter_restore(img, tile=32, overlap=8)
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert steps[-1][0] == steps[-1][1] and result.shape == img.shape
    np.testing.assert_array_equal(result, r.restore(img, tile=32, overlap=8))
    gen = r.iter_restore(img, tile=32, overlap=8)
    next(gen)
    gen.close()  # a napari worker quitting: no error


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "data, kwargs, error, message",
    [
        (np.zeros((8, 8), bool), {}, TypeError, "mask or labels"),
        (np.zeros((8, 8), np.complex64), {}, TypeError, "Complex"),
        (np.array([[object()]]), {}, TypeError, "not an image"),
        (np.array([[np.nan, 1.0]]), {}, ValueError, "NaN or Inf"),
        (np.zeros(8), {}, ValueError, "at least a 2-D"),
        (np.zeros((2, 8, 8)), {"axes": "YX"}, ValueError, "3 dimensions"),
        (np.zeros((8, 8)), {"tiling": "grid"}, ValueError, "tiling"),
        (np.zeros((8, 8)), {"normalization": "z"}, ValueError, "normalization"),
        (np.zeros((8, 8)), {"tile": 64, "overlap": 64}, ValueError, "overlap"),
        (np.zeros((8, 8)), {"out_dtype": "uint8"}, ValueError, "out_dtype"),
    ],
)
def test_bad_input_messages(tiny, data, kwargs, error, message):
    with pytest.raises(error, match=message):
        restore(data, tiny, **{**CPU, **kwargs})


def test_unknown_device_lists_available(tiny):
    with pytest.raises(ValueError, match="Available.*cpu"):
        restore(np.zeros((8, 8)), tiny, device="tpu")
    with pytest.raises(ValueError, match="not available"):
        restore(np.zeros((8, 8)), tiny, device="cuda:7")


def test_two_channel_model_refuses_rgb(rng):
    model = HINet(in_chn=2, wf=8, depth=3)
    with pytest.raises(ValueError, match="2-channel model"):
        restore(np.zeros((8, 8, 3), np.uint8), model, **CPU)


# ---------------------------------------------------------------- devices and precision
def test_cpu_default_device_and_bf16_close_to_fp32(tiny, rng):
    img = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    r = Restorer(tiny, device="cpu", compile="off")
    assert r.device.type == "cpu"
    a = r.restore(img, out_dtype="float32")
    b = Restorer(tiny, device="cpu", precision="fp32").restore(img, out_dtype="float32")
    mse = np.mean((a / 255.0 - b / 255.0) ** 2)
    assert 10 * np.log10(1 / max(mse, 1e-20)) > 40
    assert "cpu" in r.describe()


def test_fp16_refused_on_cpu(tiny):
    with pytest.raises(ValueError, match="fp16"):
        Restorer(tiny, device="cpu", precision="fp16")


def test_torch_tensor_input(tiny):
    out = restore(torch.zeros(20, 20), tiny, **CPU)
    assert isinstance(out, np.ndarray) and out.shape == (20, 20)


def test_plan_matches_progress_total(tiny, rng):
    r = Restorer(tiny, **CPU)
    img = rng.integers(0, 255, (2, 100, 90)).astype(np.uint8)
    plan = r.plan(img.shape, tile=48, overlap=12)
    assert plan["axes"] == "ZYX" and plan["tile"] == 48 and plan["overlap"] == 12 and plan["groups"] == 1
    calls = []
    r.restore(img, tile=48, overlap=12, progress=lambda d, t: calls.append(t))
    assert calls[0] == plan["tiles"] == 2 * plan["grid"][0] * plan["grid"][1]
    assert r.plan((30, 40, 3), tiling="none")["tile"] is None


def test_auto_precision_self_check(tiny, monkeypatch):
    import importlib

    from napari_hinet.engine import devices

    predictor_module = importlib.import_module("napari_hinet.engine.predictor")

    if not devices.cpu_has_fast_bf16():
        pytest.skip("this CPU has no bf16 instructions: auto precision is fp32")
    r = Restorer(tiny, device="cpu", compile="off", backend="torch")  # the torch path's own check
    assert r.dtype == torch.bfloat16 and r.precision_check["passed"] and r.precision_check["psnr_db"] > 45
    monkeypatch.setattr(predictor_module, "PRECISION_MIN_PSNR_DB", 500.0)
    with pytest.warns(UserWarning, match="using fp32"):
        r = Restorer(tiny, device="cpu", compile="off", backend="torch")
    assert r.dtype == torch.float32 and not r.precision_check["passed"]
    assert r.net.conv_01.weight.dtype == torch.float32
    explicit = Restorer(tiny, device="cpu", precision="bf16", backend="torch")
    assert explicit.precision_check is None  # explicit: no check


# ---------------------------------------------------------------- out-of-memory back-off
class _LimitedHINet(HINet):
    """A HINet on a pretend device with room for ``limit`` input pixels per forward.

    CUDA is not available in the test environment; this raises the same exception type
    torch raises on a CUDA out-of-memory, so the engine's back-off logic runs for real.
    The pretend device is torch's, so these runs use ``backend="torch"`` (:data:`TORCH`).
    """

    limit = 10**9

    def forward(self, x):
        if x.shape[0] * x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().forward(x)


TORCH = {**CPU, "backend": "torch"}


def _limited(limit: int) -> HINet:
    torch.manual_seed(0)
    model = _LimitedHINet(wf=8, depth=3).eval()
    model.limit = limit
    return model


def test_oom_halves_batch_then_matches_small_batches(rng):
    img = rng.integers(0, 255, (100, 100, 3)).astype(np.uint8)
    model = _limited(2 * 48 * 48)
    with pytest.warns(UserWarning) as caught:
        out = restore(img, model, tile=48, overlap=12, batch_size=8, **TORCH)
    messages = [str(w.message) for w in caught]
    assert any("8 tiles per batch on cpu; retrying with 4" in m for m in messages)
    assert any("retrying with 2" in m for m in messages)
    reference = restore(img, _limited(10**9), tile=48, overlap=12, batch_size=1, **TORCH)
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1


def test_oom_with_one_tile_halves_the_tile(rng):
    img = rng.integers(0, 255, (2, 70, 70)).astype(np.uint8)
    model = _limited(40 * 40)
    with pytest.warns(UserWarning, match="retrying with 32x32 tiles"):
        out = restore(img, model, tile=64, overlap=16, batch_size=1, **TORCH)
    np.testing.assert_array_equal(out, restore(img, _limited(10**9), tile=32, overlap=8, **TORCH))


def test_oom_official_tiling_gives_clear_error(rng):
    with pytest.raises(MemoryError, match="official tiling"):
        restore(np.zeros((64, 64), np.uint8), _limited(100), tiling="official", tile=64, **TORCH)


@pytest.mark.slow
def test_compile_on_matches_eager(tiny, rng):
    """torch.compile (inductor, freezing) gives the eager result; needs a C++ compiler (else falls back)."""
    img = rng.integers(0, 255, (40, 48, 3)).astype(np.uint8)
    eager = Restorer(tiny, device="cpu", precision="fp32", compile="off").restore(img, out_dtype="float32")
    compiled = Restorer(tiny, device="cpu", precision="fp32", compile="on")
    out = compiled.restore(img, out_dtype="float32")
    np.testing.assert_allclose(out, eager, atol=0.05)  # 0-255 units
    assert compiled.compile_status in ("compiled", "failed")


@pytest.mark.parametrize(
    ("tile", "overlap", "tiles_2048"), [(64, 16, 43**2), (128, 16, 19**2), (256, 32, 9**2)]
)
def test_default_overlap_is_a_quarter_up_to_64_then_an_eighth(tiny, tile, overlap, tiles_2048):
    # Large tiles need the same reach in pixels, not the same share: 128-pixel tiles with 16
    # pixels of overlap lose <= 0.015 dB against 32 (benchmarks/bench_overlap.py) and plan
    # 361 instead of 441 tiles on a 2048 x 2048 plane.
    plan = Restorer(tiny, **CPU).plan((2048, 2048, 3), tile=tile)
    assert plan["overlap"] == overlap
    assert plan["tiles"] == tiles_2048


def test_cpu_batches_are_sized_by_work_and_leave_progress_steps(tiny, rng):
    from napari_hinet.engine.batching import BatchPolicy
    from napari_hinet.model import HINet

    def batch(model, tile: int, total: int) -> int:
        return BatchPolicy(Restorer(model, **CPU).predictor, None, tile * tile, total).size

    torch.manual_seed(0)
    bundled_size, narrow = HINet(1, wf=16, depth=4), HINet(1, wf=2, depth=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert batch(bundled_size, 128, 361) == 16  # 16 tiles of 128 px: the measured best on 2 cores
        assert batch(narrow, 256, 361) == 4  # no more pixels per forward than a wf=16 model gets
        assert batch(bundled_size, 128, 20) == 3  # at least 8 forwards (progress, Cancel)
        assert batch(bundled_size, 192, 144) == 7
        torch.set_num_threads(2)  # a multiple of the threads: equal shares for OpenVINO's two streams
        assert batch(bundled_size, 192, 144) == 6
        assert batch(bundled_size, 128, 20) == 2
        assert batch(bundled_size, 128, 361) == 16
        assert batch(bundled_size, 128, 9) == 2  # two threads, two tiles: not rounded below them
    finally:
        torch.set_num_threads(threads)
    calls = []
    Restorer(tiny, **CPU).restore(
        rng.random((60, 32, 32), dtype=np.float32), tile=32, progress=lambda d, t: calls.append(d)
    )
    assert len(calls) >= 9 and calls[-1] == 60  # 0, then one call per forward
