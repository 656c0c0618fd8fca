from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.engine.tiling import (
    BandStitcher,
    axis_window,
    blend_origins,
    official_origins,
    plan_grid,
    ramp,
)


# Official "grids" crop origins (megvii-model/HINet ImageRestorationModel.grids, crop 256),
# verified against the official code (see docs/engine.md).
@pytest.mark.parametrize(
    "h, w, rows, cols",
    [
        (720, 1280, [0, 232, 464], [0, 256, 512, 768, 1024]),
        (768, 1024, [0, 256, 512], [0, 256, 512, 768]),
        (300, 300, [0, 44], [0, 44]),
        (511, 513, [0, 255], [0, 129, 257]),
        (1000, 600, [0, 248, 496, 744], [0, 172, 344]),
        (256, 256, [0], [0]),
    ],
)
def test_official_origins(h, w, rows, cols):
    assert official_origins(h, 256) == rows
    assert official_origins(w, 256) == cols
    grid = plan_grid(h, w, "official", 256, 0)
    assert grid.rows == tuple(rows) and grid.cols == tuple(cols)
    assert grid.weights(0, 0) is None  # uniform average


def test_official_small_side_shrinks_crop():
    grid = plan_grid(100, 300, "official", 256, 0)
    assert (grid.tile_h, grid.tile_w, grid.rows, grid.cols) == (100, 256, (0,), (0, 44))


@pytest.mark.parametrize("n", [1, 50, 256, 257, 300, 449, 450, 1000, 4096])
@pytest.mark.parametrize("overlap", [0, 32, 64, 128])
def test_blend_origins_cover_and_overlap(n, overlap):
    tile = 256
    origins = blend_origins(n, tile, overlap)
    t = min(tile, n)
    assert origins[0] == 0 and origins[-1] + t == n
    gaps = np.diff(origins)
    assert (gaps > 0).all()
    assert (t - gaps >= overlap).all()  # neighbours overlap by at least `overlap`


def test_ramps_sum_to_one_across_an_overlap():
    r = ramp(40)
    np.testing.assert_allclose(r + r[::-1], 1.0)
    origins = [0, 200]
    a = axis_window(origins, 0, 256)
    b = axis_window(origins, 1, 256)
    np.testing.assert_allclose(a[200:] + b[:56], 1.0, atol=2e-3)  # up to the weight floor
    assert a[0] == 1.0 and b[-1] == 1.0  # no ramp at the image border


@pytest.mark.parametrize("mode", ["blend", "official", "none"])
@pytest.mark.parametrize("h, w", [(300, 520), (37, 91), (256, 256), (513, 17)])
def test_stitching_identity_tiles_reproduces_image(mode, h, w, rng):
    image = rng.random((2, h, w)).astype(np.float32)
    grid = plan_grid(h, w, mode, 128, 32)
    out = np.full_like(image, np.nan)
    bands = []

    def emit(y0, y1, band):
        bands.append((y0, y1))
        out[:, y0:y1] = band

    s = BandStitcher(grid, 2, emit)
    for i, j, y0, x0 in grid.tiles():
        s.add(i, j, image[:, y0 : y0 + grid.tile_h, x0 : x0 + grid.tile_w])
    np.testing.assert_allclose(out, image, rtol=1e-5, atol=1e-6)
    assert bands[0][0] == 0 and bands[-1][1] == h
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:], strict=False))  # contiguous, in order


def test_blend_weights_smooth_and_positive():
    grid = plan_grid(600, 600, "blend", 256, 64)
    w = grid.weights(1, 1)
    assert w.min() > 0 and w.max() <= 1.0
    assert np.abs(np.diff(w, axis=1)).max() < 0.05  # no jump inside a tile


def test_bad_mode_and_overlap():
    with pytest.raises(ValueError, match="tiling"):
        plan_grid(10, 10, "grid", 8, 0)
    with pytest.raises(ValueError, match="overlap"):
        plan_grid(100, 100, "blend", 32, 32)
