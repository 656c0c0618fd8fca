"""Bad arrays for restore(): a clear error, or a correct result (checked against a reference).

Correct results are checked by a property the engine must keep, not by a
stored number: percentile normalisation is scale-equivariant, so restoring
``k * x`` must give ``k * restore(x)``, also where ``k * x`` nears the float range.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.engine import Restorer

from .conftest import tiny_hinet

CPU = {"device": "cpu", "precision": "fp32", "compile": "off"}


@pytest.fixture(scope="module")
def restorer():
    return Restorer(tiny_hinet(), **CPU)


@pytest.fixture(scope="module")
def rgb_restorer():
    return Restorer(tiny_hinet(3), **CPU)


def _img(shape=(24, 20), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random(shape).astype(dtype)


ERRORS = [
    # id, array, extra options, exception, message regex
    ("0x0", np.zeros((0, 0), np.float32), {}, ValueError, r"holds no pixels: axis Y has length 0"),
    ("0x5", np.zeros((0, 5), np.uint8), {}, ValueError, "holds no pixels"),
    ("5x0", np.zeros((5, 0), np.uint16), {}, ValueError, "axis X has length 0"),
    ("empty-stack", np.zeros((0, 8, 8), np.float32), {}, ValueError, "axis Z has length 0"),
    ("empty-rgb", np.zeros((8, 0, 3), np.uint8), {}, ValueError, "holds no pixels"),
    ("1-d", np.zeros(16, np.float32), {}, ValueError, r"at least a 2-D image"),
    ("0-d", np.float32(1.0), {}, ValueError, r"at least a 2-D image"),
    ("bool", np.zeros((8, 8), bool), {}, TypeError, "mask or labels"),
    ("complex", np.zeros((8, 8), complex), {}, TypeError, "Complex data"),
    ("object", np.zeros((8, 8), object), {}, TypeError, "not an image"),
    ("strings", np.full((8, 8), "a"), {}, TypeError, "not an image"),
    ("datetime", np.zeros((8, 8), "datetime64[s]"), {}, TypeError, "not an image"),
    ("nan", np.full((8, 8), np.nan, np.float32), {}, ValueError, "64 NaN or Inf"),
    ("one-inf", np.where(np.eye(8) > 0, np.inf, 0).astype(np.float32), {}, ValueError, "8 NaN or Inf"),
    ("nan-float64", np.array([[np.nan, 1.0], [2.0, 3.0]]), {}, ValueError, "1 NaN or Inf"),
    ("axes-too-short", _img(), {"axes": "ZYX"}, ValueError, "axes"),
    ("axes-unknown-letter", _img(), {"axes": "YQ"}, ValueError, "Q"),
    ("axes-repeated", _img((4, 8, 8)), {"axes": "YYX"}, ValueError, "axes"),
    ("rgb-without-channels", _img(), {"rgb": True}, ValueError, "rgb=True needs a channel axis"),
    ("out-wrong-shape", _img(), {"out": np.zeros((3, 3), np.float32)}, ValueError, "out has shape"),
    ("out-bool", _img(), {"out": np.zeros((24, 20), bool)}, TypeError, "mask or labels"),
]


@pytest.mark.parametrize("image,options,error,match", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_array_is_a_clear_error(restorer, image, options, error, match):
    with pytest.raises(error, match=match):
        restorer.restore(image, **options)


@pytest.mark.parametrize(
    "shape",
    [(1, 1), (1, 40), (40, 1), (3, 5), (17, 33), (2, 1, 1), (1, 1, 1, 1)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_tiny_and_odd_shapes_restore_to_the_same_shape(restorer, shape):
    image = _img(shape)
    out = restorer.restore(image, normalization="fixed")
    assert out.shape == image.shape and out.dtype == image.dtype and np.isfinite(out).all()


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64, np.float16, np.float64]
)
def test_every_numeric_dtype_round_trips(restorer, dtype):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        image = rng.random((24, 20)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        image = rng.integers(max(info.min, -1000), min(info.max, 1000), (24, 20)).astype(dtype)
    out = restorer.restore(image)
    assert out.dtype == image.dtype and out.shape == image.shape
    if np.dtype(dtype).kind == "f":
        assert np.isfinite(out).all()


@pytest.mark.parametrize(
    "scale,dtype",
    [(1e30, np.float32), (3e37, np.float32), (1e300, np.float64), (1e-30, np.float32), (1e10, np.float64)],
    ids=["1e30-f32", "3e37-f32", "1e300-f64", "1e-30-f32", "1e10-f64"],
)
def test_extreme_float_ranges_give_the_scaled_result(restorer, scale, dtype):
    """Percentile normalisation commutes with scaling: no overflow to NaN near the float limits."""
    image = _img() * 2 - 1  # [-1, 1]
    reference = restorer.restore(image, normalization="percentile", out_dtype="float32").astype(np.float64)
    scaled = restorer.restore((image.astype(dtype) * dtype(scale)), normalization="percentile")
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled.astype(np.float64) / scale, reference, rtol=1e-3, atol=1e-4)


def test_values_at_the_float32_limit_saturate_not_overflow(restorer):
    image = np.where(np.indices((16, 16)).sum(0) % 2, 3e38, -3e38).astype(np.float32)
    out = restorer.restore(image, normalization="percentile")
    assert np.isfinite(out).all() and np.abs(out).max() <= np.finfo(np.float32).max


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_nan_output_is_an_error_not_a_black_image(dtype):
    import torch

    model = tiny_hinet()
    with torch.no_grad():
        model.conv_01.weight.fill_(float("nan"))
    restorer = Restorer(model, **CPU)
    with pytest.raises(FloatingPointError, match="256 NaN or Inf value"):
        restorer.restore(np.ones((16, 16), dtype))


def test_nan_output_is_an_error_with_out_and_in_dask(restorer):
    import dask.array as da
    import torch

    from napari_hinet import restore

    model = tiny_hinet()
    with torch.no_grad():
        model.conv_01.weight.fill_(float("nan"))
    lazy = restore(da.ones((32, 32), np.uint8, chunks=16), model, **CPU)
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        lazy.compute()


def test_rgba_alpha_is_kept(rgb_restorer):
    image = (np.random.default_rng(0).random((16, 16, 4)) * 255).astype(np.uint8)
    out = rgb_restorer.restore(image)
    np.testing.assert_array_equal(out[..., 3], image[..., 3])


DIM = [
    # id, dtype, fraction of the dtype range the data span, expected auto choice
    ("float-1/100", np.float32, 0.01, "percentile"),
    ("float-1/4", np.float32, 0.25, "percentile"),
    ("float-full", np.float32, 1.0, "fixed"),
    ("uint16-12-bit", np.uint16, 4095 / 65535, "percentile"),
    ("uint16-full", np.uint16, 1.0, "fixed"),
    ("uint8-dim", np.uint8, 0.2, "percentile"),
    ("uint8-full", np.uint8, 1.0, "fixed"),
]


@pytest.mark.parametrize("dtype,fraction,expected", [c[1:] for c in DIM], ids=[c[0] for c in DIM])
def test_auto_normalization_of_dim_photos(rgb_restorer, dtype, fraction, expected):
    """Rule 5 of engine.intensity: photos using under half their range are mapped by percentiles."""
    base = np.random.default_rng(1).random((24, 20, 3))
    top = 1.0 if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
    image = (
        (base * fraction * top).astype(dtype)
        if np.dtype(dtype).kind == "f"
        else np.rint(base * fraction * top).astype(dtype)
    )
    auto = rgb_restorer.restore(image, normalization="auto")
    np.testing.assert_array_equal(auto, rgb_restorer.restore(image, normalization=expected))
    other = "fixed" if expected == "percentile" else "percentile"
    assert not np.array_equal(auto, rgb_restorer.restore(image, normalization=other))  # the choice matters
