"""The one tile loop: :func:`run_tiles` reads tiles, runs them through the predictor, hands them to a sink.

Both ways of restoring use it: the in-memory engine (:mod:`.restore`, a
band-stitching sink that writes finished bands into ``out``) and the dask path
(:mod:`.lazy`, a block sink that keeps one block's pixels). The loop:

1. walks the tiles in the engine's order: plane, tile row, channel group,
   tile column (:func:`tile_order`), from the first unfinished plane;
2. before each batch, checks ``cancel`` and raises :class:`Cancelled`;
3. reads each tile's network input from a :class:`TileSource` (normalised
   bands, a single channel copied to every network input channel);
4. runs the batch through the :class:`~.batching.BatchPolicy` (which calls
   :meth:`.predictor.Predictor.forward`), once per orientation of the plan
   and averaged (:func:`.ensemble.forward_ensemble`; one without ``ensemble``);
5. averages a replicated group's output channels back to one, and hands the
   tile to the sink (``sink.add``); when a plane's last tile is in, calls
   ``sink.plane_done(plane)``;
6. yields ``(done, total)`` tiles: once before the first batch, then after each.

A sink is any object with ``add(plane, group, i, j, tile)`` (``tile``:
(group channels, tile_h, tile_w) float32 in network units) and
``plane_done(plane)``; :func:`write_rows` and :func:`copy_alpha` are the
shared ways a sink writes results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Protocol, Union

import numpy as np

from .axes import Layout
from .batching import BatchPolicy
from .ensemble import forward_ensemble
from .intensity import Mapping, check_finite, to_output
from .mappings import PlaneMappings
from .plan import RunPlan

#: ``cancel=``: an Event (set = cancel), a callable returning True to cancel, or None.
CancelToken = Union[threading.Event, Callable[[], bool], None]  # noqa: UP007 (runtime alias)


class Cancelled(Exception):  # noqa: N818 (the public name is fixed by the API)
    """A run was cancelled through its ``cancel`` token.

    Attributes:
        planes_done: planes (Z/T/... indices) completely written to ``out``
            before the cancel; meaningful only when the caller passed ``out=``.
        n_planes: planes in the input.
    """

    def __init__(self, planes_done: int = 0, n_planes: int = 0) -> None:
        super().__init__(f"Restoration cancelled after {planes_done} of {n_planes} plane(s).")
        self.planes_done = planes_done
        self.n_planes = n_planes


def is_cancelled(cancel: CancelToken) -> bool:
    """True when ``cancel`` (an Event, anything with ``is_set``, or a callable) says stop."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class Sink(Protocol):
    """Where :func:`run_tiles` hands finished tiles."""

    def add(self, plane: int, group: int, i: int, j: int, tile: np.ndarray) -> None: ...

    def plane_done(self, plane: int) -> None: ...


class TileSource:
    """Network inputs of a plan's tiles, read band by band from ``image`` (numpy, zarr, a dask block).

    Args:
        plan: the run plan.
        image: the array to read; ``layout`` describes it.
        mappings: ``mappings(plane)`` -> one :class:`.intensity.Mapping` per group (:mod:`.mappings`).
        origin: (y, x) of ``image``'s first pixel in the plan's plane (a dask block's offset).
        check_bands: check each band read for NaN/Inf (arrays not checked whole beforehand).

    One read of a tile row serves every group and tile column of it; a few
    bands and the mappings of the planes a batch can still touch are kept.
    """

    def __init__(
        self,
        plan: RunPlan,
        image: Any,
        layout: Layout,
        mappings: PlaneMappings,
        *,
        origin: tuple[int, int] = (0, 0),
        check_bands: bool = False,
    ) -> None:
        self.plan = plan
        self.image = image
        self.layout = layout
        self._mappings = mappings
        self.origin = origin
        self.check_bands = check_bands
        self.batch_size = 1
        self._maps: OrderedDict[int, Sequence[Mapping]] = OrderedDict()
        self._bands: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    def mappings(self, plane: int) -> Sequence[Mapping]:
        """The mapping of each group of ``plane`` (kept for the planes a batch can still touch)."""
        maps = self._maps.get(plane)
        if maps is None:
            maps = self._maps[plane] = self._mappings(plane)
            while len(self._maps) > 2 * self.batch_size + 2:
                self._maps.popitem(last=False)
        return maps

    def _band(self, plane: int, row: int, group: int) -> np.ndarray:
        """Normalised rows of tile row ``row`` for ``group``: (group channels, tile_h, width) float32."""
        key = (plane, row, group)
        band = self._bands.get(key)
        if band is None:
            grid = self.plan.grid
            y0 = grid.rows[row] - self.origin[0]
            raw = self.layout.read(self.image, plane, y0, y0 + grid.tile_h)
            if self.check_bands:
                check_finite(raw, f" (plane {plane}, rows {y0}-{y0 + grid.tile_h})")
            maps = self.mappings(plane)
            for g, grp in enumerate(self.plan.groups):
                self._bands[(plane, row, g)] = maps[g].forward(raw[list(grp.channels)])
            while len(self._bands) > 4 * len(self.plan.groups) * max(
                1, self.batch_size // len(grid.cols) + 1
            ):
                self._bands.popitem(last=False)
            band = self._bands[key]
        return band

    def tile(self, plane: int, group: int, i: int, j: int) -> np.ndarray:
        """(network channels, tile_h, tile_w) float32: tile (i, j) of ``group`` in ``plane``."""
        grid = self.plan.grid
        x0 = grid.cols[j] - self.origin[1]
        tile = self._band(plane, i, group)[:, :, x0 : x0 + grid.tile_w]
        if self.plan.groups[group].replicate:
            tile = np.repeat(tile, self.plan.in_channels, axis=0)
        return tile


def tile_order(
    planes: Sequence[int], n_groups: int, rows: Sequence[int], cols: Sequence[int]
) -> Iterator[tuple[int, int, int, int]]:
    """(plane, group, tile row, tile column) in the engine's order (rule 1)."""
    for p in planes:
        for i in rows:
            for g in range(n_groups):
                for j in cols:
                    yield p, g, i, j


def write_rows(
    plan: RunPlan,
    layout: Layout,
    out: Any,
    plane: int,
    group: int,
    mapping: Mapping,
    y0: int,
    y1: int,
    band: np.ndarray,
) -> None:
    """Write ``band`` (group channels, y1 - y0, width) in network units into rows y0:y1 of ``out``.

    Network units -> data units (``mapping.inverse``) -> the plan's clip and output dtype.
    """
    values = to_output(mapping.inverse(band), np.dtype(plan.result_dtype), plan.clip)
    for k, c in enumerate(plan.groups[group].channels):
        layout.write(out, plane, c, y0, y1, values[k])


def copy_alpha(
    layout: Layout,
    image: Any,
    out_layout: Layout,
    out: Any,
    plane: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    dtype: np.dtype,
    step: int = 1024,
) -> None:
    """Copy channel 3 (alpha) of ``image[rows, cols]`` of ``plane`` unchanged into ``out`` (from its row 0)."""
    y0, y1 = rows
    for a in range(y0, y1, step):
        b = min(y1, a + step)
        alpha = layout.read(image, plane, a, b, cols[0], cols[1])[3]
        out_layout.write(out, plane, 3, a - y0, b - y0, alpha.astype(dtype, copy=False))


def run_tiles(
    plan: RunPlan,
    policy: BatchPolicy,
    source: TileSource,
    sink: Sink,
    *,
    cancel: CancelToken = None,
    first_plane: int = 0,
    rows: Sequence[int] | None = None,
    cols: Sequence[int] | None = None,
    n_planes: int | None = None,
) -> Generator[tuple[int, int], None, None]:
    """The tile loop (rules 1-6 of the module docstring).

    Args:
        plan: what to run.
        policy: batch sizes and the predictor (:class:`~.batching.BatchPolicy`).
        source: tile inputs.
        sink: receives the outputs.
        cancel: checked before every batch.
        first_plane: planes before it are already done (a restart after smaller tiles).
        rows, cols: the tile rows and columns to run (default: all; a dask block runs those
            touching it).
        n_planes: planes in ``source`` (default: the plan's; a dask block holds fewer).

    Yields ``(done, total)`` in tiles. Raises :class:`Cancelled` (with the
    planes completed so far) or :class:`~.batching.TileTooLarge`.
    """
    grid = plan.grid
    rows = range(len(grid.rows)) if rows is None else rows
    cols = range(len(grid.cols)) if cols is None else cols
    n_groups = len(plan.groups)
    n_planes = plan.n_planes if n_planes is None else n_planes
    per_plane = len(rows) * n_groups * len(cols)
    total = n_planes * per_plane
    done = first_plane * per_plane
    yield done, total
    items = tile_order(range(first_plane, n_planes), n_groups, rows, cols)
    left_in_plane = per_plane
    complete = first_plane
    while True:
        source.batch_size = policy.size
        pending = [item for _, item in zip(range(policy.next_size), items, strict=False)]
        if not pending:
            return
        if is_cancelled(cancel):
            raise Cancelled(complete, n_planes)
        batch = np.stack([source.tile(*item) for item in pending])
        result = forward_ensemble(policy.run, batch, plan.orientations)
        for (p, g, i, j), tile in zip(pending, result, strict=True):
            if plan.groups[g].replicate:
                tile = tile.mean(axis=0, keepdims=True)
            sink.add(p, g, i, j, tile)
            left_in_plane -= 1
            if left_in_plane == 0:
                sink.plane_done(p)
                complete, left_in_plane = p + 1, per_plane
        done += len(pending)
        yield done, total
