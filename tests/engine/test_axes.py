from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.engine.axes import Layout, check_axes, guess_axes


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((10, 12), "YX"),
        ((10, 12, 3), "YXC"),
        ((10, 12, 4), "YXC"),
        ((10, 12, 5), "ZYX"),
        ((3, 10, 12), "ZYX"),
        ((2, 5, 10, 12), "TZYX"),
        ((5, 10, 12, 3), "ZYXC"),
        ((2, 5, 10, 12, 3), "TZYXC"),
        ((2, 3, 5, 10, 12), "TCZYX"),
    ],
)
def test_guess_follows_napari_rgb_rule(shape, axes):
    assert guess_axes(shape) == axes


def test_guess_rejects_1d_and_6d():
    with pytest.raises(ValueError, match="at least a 2-D"):
        guess_axes((5,))
    with pytest.raises(ValueError, match="pass axes="):
        guess_axes((2, 2, 2, 2, 2, 2))


@pytest.mark.parametrize(
    "axes, shape, message",
    [
        ("YX", (2, 3, 4), "3 dimensions"),
        ("ZZX", (2, 3, 4), "repeats Z"),
        ("ZYC", (2, 3, 4), "lacks X"),
        ("Y1X", (2, 3, 4), "letters"),
    ],
)
def test_check_axes_errors(axes, shape, message):
    with pytest.raises(ValueError, match=message):
        check_axes(axes, shape)


def test_lower_case_accepted():
    assert check_axes("zyx", (2, 3, 4)) == "ZYX"


def test_rgb_rule():
    assert Layout.create((8, 8, 3)).rgb
    assert Layout.create((8, 8, 4), "YXC").has_alpha
    assert not Layout.create((3, 8, 8), "CYX").rgb  # channel axis not last: independent channels
    assert Layout.create((3, 8, 8), "CYX", rgb=True).rgb
    assert not Layout.create((8, 8, 3), "YXC", rgb=False).rgb
    with pytest.raises(ValueError, match="rgb=True"):
        Layout.create((8, 8, 2), "YXC", rgb=True)


@pytest.mark.parametrize("axes", ["TCZYX", "XYZ", "CXY", "YXC", "ZCYX", "YX"])
def test_read_write_round_trip_any_order(axes, rng):
    sizes = {"T": 2, "C": 3, "Z": 2, "Y": 5, "X": 7}
    shape = tuple(sizes[a] for a in axes)
    data = rng.integers(0, 100, shape)
    lay = Layout.create(shape, axes, rgb=False)
    out = np.zeros_like(data)
    for p in range(lay.n_planes):
        block = lay.read(data, p, 1, 4, 2, 6)
        assert block.shape == (lay.channels, 3, 4)
        full = lay.read(data, p, 0, lay.height)
        for c in range(lay.channels):
            lay.write(out, p, c if "C" in axes else None, 0, lay.height, full[c])
    np.testing.assert_array_equal(out, data)
    # the region equals the same region cut from a canonical (planes, C, Y, X) copy
    order = [axes.index(a) for a in axes if a not in "YXC"] + [axes.index(a) for a in "CYX" if a in axes]
    canon = data.transpose(order).reshape(lay.n_planes, lay.channels, lay.height, lay.width)
    np.testing.assert_array_equal(lay.read(data, lay.n_planes - 1, 1, 4, 2, 6), canon[-1, :, 1:4, 2:6])
