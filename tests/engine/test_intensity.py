from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.engine.intensity import (
    Mapping,
    check_dtype,
    check_finite,
    choose_normalization,
    dtype_range,
    output_clip,
    percentile_mapping,
    subsample,
    to_output,
)


@pytest.mark.parametrize(
    "dtype, message",
    [(bool, "mask or labels"), (np.complex64, "Complex"), (object, "not an image"), ("U3", "not an image")],
)
def test_rejected_dtypes(dtype, message):
    with pytest.raises(TypeError, match=message):
        check_dtype(dtype)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32, np.float16, np.float32, np.float64]
)
def test_accepted_dtypes(dtype):
    assert check_dtype(dtype) == np.dtype(dtype)


def test_nan_and_inf_are_reported():
    a = np.zeros((4, 4), np.float32)
    check_finite(a)
    a[1, 2] = np.nan
    a[0, 0] = np.inf
    with pytest.raises(ValueError, match="2 NaN or Inf"):
        check_finite(a)


def test_fixed_ranges():
    assert dtype_range(np.uint8) == (0, 255)
    assert dtype_range(np.uint16) == (0, 65535)
    assert dtype_range(np.int16) == (-32768, 32767)
    assert dtype_range(np.float32) == (0.0, 1.0)


def test_mapping_inverse_is_exact_for_uint16(rng):
    x = rng.integers(0, 65536, (64, 64)).astype(np.uint16)
    m = percentile_mapping(x, (1.0, 99.8))
    back = to_output(
        m.inverse(m.forward(x)), np.dtype(np.uint16), output_clip(np.dtype(np.uint16), "percentile")
    )
    np.testing.assert_array_equal(back, x)


def test_constant_image_maps_back_unchanged():
    x = np.full((8, 8), 7, np.uint16)
    m = percentile_mapping(x, (1.0, 99.8))
    assert m.scale == 1.0
    np.testing.assert_array_equal(to_output(m.inverse(m.forward(x)), np.dtype(np.uint16), (0, 65535)), x)


def test_percentiles_are_robust_to_hot_pixels(rng):
    x = rng.normal(1000, 10, (100, 100))
    x[0, :5] = 60000
    m = percentile_mapping(x, (1.0, 99.8))
    assert m.high < 1100


def test_auto_rules():
    u8, u16, f32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)
    assert choose_normalization("auto", u8, False, None, None) == "fixed"
    assert choose_normalization("auto", u16, True, None, None) == "fixed"  # 16-bit RGB photo
    assert choose_normalization("auto", u16, False, None, None) == "percentile"  # microscopy
    assert choose_normalization("auto", u8, True, "percentile", None) == "percentile"  # model says so
    assert choose_normalization("auto", f32, False, "fixed", np.array([0.0, 0.5, 1.0])) == "fixed"
    assert choose_normalization("auto", f32, False, "fixed", np.array([0.0, 3.0])) == "percentile"
    assert choose_normalization("fixed", u16, False, "percentile", None) == "fixed"


def test_output_rounds_and_clips():
    v = np.array([-3.0, 0.4, 0.6, 254.5, 300.0], np.float32)
    np.testing.assert_array_equal(to_output(v.copy(), np.dtype(np.uint8), (0, 255)), [0, 0, 1, 254, 255])
    big = np.array([-1e12, 1e12], np.float32)
    assert to_output(big.copy(), np.dtype(np.int32), dtype_range(np.int32)).tolist() == [-(2**31), 2**31 - 1]
    assert (
        to_output(big.copy(), np.dtype(np.int64), dtype_range(np.int64)).tolist()
        == big.astype(np.int64).tolist()
    )
    f = to_output(
        np.array([-0.5, 0.5, 2.0], np.float32),
        np.dtype(np.float32),
        output_clip(np.dtype(np.float32), "fixed"),
    )
    np.testing.assert_array_equal(f, [0.0, 0.5, 1.0])
    assert output_clip(np.dtype(np.float32), "percentile") is None


def test_subsample_bounds_size(rng):
    a = rng.random((3, 1000, 1000))
    s = subsample(a, 100_000)
    assert s.size <= 3 * 100_000 * 1.2 and s.shape[0] == 3
    assert subsample(a[:, :10, :10]).shape == (3, 10, 10)


def test_mapping_forward_is_float32():
    assert Mapping(0, 255).forward(np.arange(3, dtype=np.uint8)).dtype == np.float32


def test_training_and_inference_share_one_percentile_normalisation():
    """One mapping and one zero-range rule: a constant image maps to 0 in training and inference."""
    from napari_hinet.engine.intensity import DEFAULT_PERCENTILES, percentile_mapping, percentile_normalize
    from napari_hinet.training import pool

    assert pool.percentile_normalize is percentile_normalize
    flat = np.full((16, 16), 700, np.uint16)
    np.testing.assert_array_equal(percentile_normalize(flat), np.zeros((16, 16), np.float32))
    img = np.random.default_rng(0).integers(0, 4000, (32, 32)).astype(np.uint16)
    mapping = percentile_mapping(img, DEFAULT_PERCENTILES)
    np.testing.assert_array_equal(percentile_normalize(img), mapping.forward(img))
