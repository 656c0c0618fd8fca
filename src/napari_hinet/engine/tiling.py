"""The single tiling engine: where tiles go, how they are weighted, how bands are stitched.

Three modes share one data path (tiles of one size, batched, merged by a
weighted average ``sum(w * tile) / sum(w)``):

``"blend"`` (default)
    Tiles of the model's patch size, spread evenly so that neighbours overlap
    by at least ``overlap`` pixels. Each tile is weighted by a separable
    raised-cosine window that ramps from ~0 to 1 across the *actual* overlap
    with each neighbour and is flat (1) elsewhere, including along image
    borders. Where two tiles overlap the two ramps sum to exactly 1, so the
    transition is smooth and no seam is left.
``"official"``
    The test-time "grids" of the HINet code (megvii-model/HINet,
    ``ImageRestorationModel.grids``): origins ``0, step, 2*step ...`` with the
    last snapped to ``n - crop``, and a uniform average (weight 1). Use it to
    reproduce published numbers. Where an image side is shorter than the crop,
    the official code returns NaN or fails; here the crop shrinks to that side.
``"none"``
    One tile = the whole plane.

Tiles never leave the image; only a side shorter than the tile is smaller, and
the network input is reflect-padded to a multiple of ``2**(depth-1)`` (see
:func:`napari_hinet.model.padding.pad_to_valid`) and cropped back.

:class:`TileAccumulator` is the one weighted sum: it adds tiles into a
rectangular window of the plane (cropping each tile to the window) and
divides by the weight sum. Its two users:

* :class:`BandStitcher` (in-memory restore) slides a ``tile_h x width``
  window down the plane one *row of tiles* at a time and hands out finished
  horizontal bands, so the host holds a band rather than a float copy of the plane;
* the dask block sink (:mod:`.lazy`) keeps one window = the block's own pixels.

Both add the same tiles with the same weights in the same order, so a pixel
gets bit-identical sums either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..settings import TILINGS

#: Smallest window weight; keeps every weight positive.
WEIGHT_FLOOR = 1e-3


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= n."""
    return -(-n // multiple) * multiple


def blend_origins(n: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along an axis of length ``n``: evenly spread, neighbours overlap >= ``overlap``.

    The first origin is 0, the last ``n - tile``; ``tile >= n`` gives ``[0]``.
    """
    if tile >= n:
        return [0]
    stride = tile - overlap
    count = math.ceil((n - tile) / stride) + 1
    return [round(i * (n - tile) / (count - 1)) for i in range(count)]


def official_origins(n: int, crop: int) -> list[int]:
    """Crop origins of the official HINet ``grids()`` along an axis of length ``n >= crop``."""
    count = math.ceil(n / crop)
    step = crop if count == 1 else math.ceil((n - crop) / (count - 1) - 1e-8)
    origins: list[int] = []
    position = 0
    while True:
        if position + crop >= n:
            origins.append(n - crop)
            return origins
        origins.append(position)
        position += step


def ramp(length: int) -> np.ndarray:
    """Raised-cosine ramp of ``length`` samples rising from ~0 to ~1 (``ramp + ramp[::-1] == 1``)."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return 0.5 - 0.5 * np.cos(np.pi * t)


def axis_window(origins: list[int], index: int, tile: int) -> np.ndarray:
    """1-D blend weights of tile ``index`` along one axis (ramps only towards neighbours)."""
    w = np.ones(tile, dtype=np.float64)
    start = origins[index]
    if index > 0:  # ramp up across the overlap with the previous tile
        overlap = origins[index - 1] + tile - start
        if overlap > 0:
            w[:overlap] *= ramp(overlap)
    if index + 1 < len(origins):  # ramp down across the overlap with the next tile
        overlap = start + tile - origins[index + 1]
        if overlap > 0:
            w[tile - overlap :] *= ramp(overlap)[::-1]
    return np.maximum(w, WEIGHT_FLOOR)


@dataclass(frozen=True)
class TileGrid:
    """Tile positions for a plane of ``height x width``.

    Attributes:
        height, width: plane size in pixels.
        tile_h, tile_w: tile size (the requested tile, or smaller along a short side).
        rows, cols: tile origins along Y and X (every tile is ``rows[i], cols[j]``).
        mode: ``"blend"``, ``"official"`` or ``"none"``.
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    mode: str

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def tiles(self) -> Iterator[tuple[int, int, int, int]]:
        """(row index, col index, y0, x0) in row-major order."""
        for i, y0 in enumerate(self.rows):
            for j, x0 in enumerate(self.cols):
                yield i, j, y0, x0

    def weights(self, i: int, j: int) -> np.ndarray | None:
        """(tile_h, tile_w) float32 weights of tile (i, j); ``None`` = uniform (1)."""
        if self.mode != "blend":
            return None
        wy = axis_window(list(self.rows), i, self.tile_h)
        wx = axis_window(list(self.cols), j, self.tile_w)
        return np.outer(wy, wx).astype(np.float32)


def plan_grid(height: int, width: int, mode: str, tile: int, overlap: int) -> TileGrid:
    """The tile grid of ``mode`` for one plane.

    Args:
        height, width: plane size (pixels).
        mode: ``"blend"``, ``"official"`` or ``"none"``.
        tile: tile (``"official"``: crop) edge in pixels.
        overlap: minimum overlap of neighbouring tiles (``"blend"`` only), < tile.
    """
    if mode not in TILINGS:
        raise ValueError(f"tiling={mode!r} is not valid; choose one of {', '.join(TILINGS)}.")
    if mode == "none":
        return TileGrid(height, width, height, width, (0,), (0,), mode)
    th, tw = min(tile, height), min(tile, width)
    if mode == "official":
        return TileGrid(
            height,
            width,
            th,
            tw,
            tuple(official_origins(height, th)),
            tuple(official_origins(width, tw)),
            mode,
        )
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile); got overlap={overlap}, tile={tile}.")
    rows = blend_origins(height, th, overlap)
    cols = blend_origins(width, tw, overlap)
    return TileGrid(height, width, th, tw, tuple(rows), tuple(cols), mode)


class TileAccumulator:
    """Weighted sum of a grid's tiles over the window rows ``y0:y0+height``, cols ``x0:x0+width``.

    :meth:`add` crops a tile to the window and adds ``tile * weight`` (and the
    weight); :meth:`result` divides by the weight sum. :meth:`advance` slides
    the window down (the rows that leave are dropped, new rows start at zero).
    Memory: a (channels, height, width) and a (height, width) float32 buffer.
    """

    def __init__(self, grid: TileGrid, channels: int, y0: int, x0: int, height: int, width: int) -> None:
        self.grid = grid
        self.y0, self.x0 = y0, x0
        self._acc = np.zeros((channels, height, width), np.float32)
        self._wsum = np.zeros((height, width), np.float32)

    def add(self, i: int, j: int, tile: np.ndarray) -> None:
        """Add tile (i, j) of shape (channels, tile_h, tile_w) where it meets the window."""
        g = self.grid
        ty, tx = g.rows[i], g.cols[j]
        height, width = self._wsum.shape
        a0, a1 = max(self.y0, ty), min(self.y0 + height, ty + g.tile_h)
        b0, b1 = max(self.x0, tx), min(self.x0 + width, tx + g.tile_w)
        if a0 >= a1 or b0 >= b1:
            return
        part = tile[:, a0 - ty : a1 - ty, b0 - tx : b1 - tx]
        rows, cols = slice(a0 - self.y0, a1 - self.y0), slice(b0 - self.x0, b1 - self.x0)
        w = g.weights(i, j)
        if w is None:
            self._acc[:, rows, cols] += part
            self._wsum[rows, cols] += 1.0
        else:
            w = w[a0 - ty : a1 - ty, b0 - tx : b1 - tx]
            self._acc[:, rows, cols] += part * w
            self._wsum[rows, cols] += w

    def result(self, rows: int | None = None) -> np.ndarray:
        """(channels, rows, width) float32 weighted mean of the window's first ``rows`` rows (all: None)."""
        n = self._wsum.shape[0] if rows is None else rows
        return self._acc[:, :n] / self._wsum[:n]

    def advance(self, rows: int) -> None:
        """Slide the window down by ``rows``: drop its first rows, append zero rows."""
        n = rows
        self._acc = np.concatenate([self._acc[:, n:], np.zeros_like(self._acc[:, :n])], axis=1)
        self._wsum = np.concatenate([self._wsum[n:], np.zeros_like(self._wsum[:n])], axis=0)
        self.y0 += n


class BandStitcher:
    """Merge the tiles of one plane, one row of tiles at a time, into finished row bands.

    Feed tiles in row-major order with :meth:`add`; whenever a row of tiles is
    complete, the rows that no later tile touches are divided by their weight
    sum and passed to ``emit(y0, y1, band)`` with ``band`` of shape
    (channels, y1 - y0, width), float32. Memory: one ``tile_h x width``
    :class:`TileAccumulator`.
    """

    def __init__(self, grid: TileGrid, channels: int, emit: Callable[[int, int, np.ndarray], None]) -> None:
        self.grid = grid
        self.emit = emit
        self._window = TileAccumulator(grid, channels, grid.rows[0], 0, grid.tile_h, grid.width)
        self._in_row = 0  # tiles added to the current row of tiles

    def add(self, i: int, j: int, tile: np.ndarray) -> None:
        """Add tile (i, j) (channels, tile_h, tile_w); emit finished rows when row ``i`` is complete."""
        self._window.add(i, j, tile)
        self._in_row += 1
        if self._in_row == len(self.grid.cols):
            self._in_row = 0
            self._finish_row(i)

    def _finish_row(self, i: int) -> None:
        g = self.grid
        y0 = g.rows[i]
        y1 = g.rows[i + 1] if i + 1 < len(g.rows) else g.height
        n = y1 - y0
        if n > 0:
            self.emit(y0, y1, self._window.result(n))
        self._window.advance(n)
