"""RunPlan: everything a restoration run decides before it reads a tile.

:func:`plan_run` turns the model's metadata, the input's shape and dtype and
a :class:`~napari_hinet.settings.RestoreSettings` into a frozen, picklable
:class:`RunPlan`. The rules, in the order they are applied:

1. the axes are guessed or checked and the RGB rule applied (:mod:`.axes`);
2. the channels become *groups*, each one network input: RGB data on a
   3-channel model is one group; RGB on a 1-channel model is one group per
   colour; any other channel is its own group, copied to every network input
   channel (``replicate``) and averaged back (:func:`channel_groups`);
3. the tile is the requested one or the model's ``patch_size`` (with local
   statistics, ``metadata["statistics"] == "local"``: the larger of
   :data:`LOCAL_TILE` and twice the patch, since the windows keep the
   statistics local), at least two
   network size multiples, rounded up to a multiple of ``2**(depth-1)``; the
   overlap defaults to :func:`~napari_hinet.settings.default_overlap` of the tile
   (a quarter up to 64 pixels, then an eighth) and may be at most half the tile
   (:func:`~napari_hinet.settings.check_overlap`);
4. the tile grid of one plane is planned by :func:`.tiling.plan_grid`;
5. ``normalization="auto"`` is resolved by :func:`.intensity.choose_normalization`
   (data that rules 2-3 would map "fixed" are sampled for rule 5: ``sample`` is called only then);
6. the output dtype is ``out.dtype``, else ``float32`` for ``out_dtype="float32"``,
   else the input dtype, and the output clip follows (:func:`.intensity.output_clip`);
7. ``ensemble=True`` plans the orientations of the model's task that each tile is
   run in and averaged over (:func:`.ensemble.orientations_for`); otherwise one.

The in-memory engine (:mod:`.restore`) and the dask path (:mod:`.lazy`) plan
with this one function, which is why they tile, map and clip alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metadata import ModelMetadata
from ..settings import RestoreSettings, check_overlap, default_overlap
from .axes import Layout
from .ensemble import orientations_for
from .intensity import check_dtype, choose_normalization, output_clip
from .tiling import TileGrid, plan_grid, round_up

#: Smallest default tile with local statistics (TLC): large tiles, little overlap overhead.
LOCAL_TILE = 512


@dataclass(frozen=True)
class Group:
    """Data channels that form one network input; ``replicate`` = one channel copied to all inputs."""

    channels: tuple[int, ...]
    replicate: bool

    @property
    def out_channels(self) -> int:
        return len(self.channels)


def channel_groups(in_channels: int, layout: Layout) -> tuple[Group, ...]:
    """Rule 2: the network inputs of one plane of data with ``layout``."""
    n = in_channels
    if layout.rgb:
        if n == 3:
            return (Group((0, 1, 2), replicate=False),)
        if n == 1:
            return tuple(Group((c,), replicate=False) for c in range(3))
        raise ValueError(f"A {n}-channel model cannot restore RGB data; use a 1- or 3-channel model.")
    return tuple(Group((c,), replicate=n > 1) for c in range(layout.channels))


@dataclass(frozen=True)
class RunPlan:
    """A planned run (plain values; cheap to pickle into a dask graph).

    Attributes:
        layout: axes, shape and RGB flag of the input.
        groups: channel groups, each one network input (rule 2).
        in_channels: channels of the network input.
        size_multiple: network H, W are padded to multiples of this.
        tiling, tile, overlap: resolved tiling (rule 3).
        grid: the tile grid of one plane (rule 4).
        batch_size: requested tiles per forward; ``None`` = :class:`.batching.BatchPolicy` decides.
        normalization: ``"fixed"`` or ``"percentile"`` (rule 5).
        percentiles, normalize_per: percentile options (see :mod:`.mappings`).
        input_dtype, result_dtype: numpy dtype names of the input and the output (rule 6).
        clip: clip range of results in data units, or ``None``.
        orientations: the orientations (0-7) each tile runs in, averaged (rule 7; ``(0,)`` = one).
    """

    layout: Layout
    groups: tuple[Group, ...]
    in_channels: int
    size_multiple: int
    tiling: str
    tile: int
    overlap: int
    grid: TileGrid
    batch_size: int | None
    normalization: str
    percentiles: tuple[float, float]
    normalize_per: str
    input_dtype: str
    result_dtype: str
    clip: tuple[float, float] | None
    orientations: tuple[int, ...] = (0,)

    @property
    def n_planes(self) -> int:
        return self.layout.n_planes

    @property
    def tiles_per_plane(self) -> int:
        """Network inputs per plane: groups x tiles."""
        return len(self.groups) * self.grid.n_tiles

    @property
    def total_tiles(self) -> int:
        """Network inputs of the whole run (the ``total`` of ``progress``)."""
        return self.n_planes * self.tiles_per_plane

    def summary(self) -> dict[str, Any]:
        """The dict of :meth:`napari_hinet.Restorer.plan` (``None`` where a tiling has no tile/overlap)."""
        return {
            "axes": self.layout.axes,
            "rgb": self.layout.rgb,
            "tiling": self.tiling,
            "tile": None if self.tiling == "none" else self.tile,
            "overlap": self.overlap if self.tiling == "blend" else None,
            "grid": (len(self.grid.rows), len(self.grid.cols)),
            "planes": self.n_planes,
            "groups": len(self.groups),
            "tiles": self.total_tiles,
            "ensemble": len(self.orientations),
        }

    def with_smaller_tiles(self, device: Any) -> RunPlan:
        """The plan after one tile did not fit the memory of ``device``.

        ``"none"`` becomes ``"blend"`` with half the longer side; ``"blend"``
        halves the tile (down to two size multiples); ``"official"`` cannot
        change its crop. Raises ``MemoryError`` with the fix when nothing smaller exists.
        """
        lay, m = self.layout, self.size_multiple
        minimum = 2 * m
        if self.tiling == "none":
            tiling, tile = "blend", round_up(max(lay.height, lay.width) // 2, m)
        elif self.tiling == "official" or self.tile <= minimum:
            raise MemoryError(
                f"One {self.grid.tile_h}x{self.grid.tile_w} tile does not fit in the memory of {device}"
                + (
                    "; official tiling cannot change its crop size, use tiling='blend'."
                    if self.tiling == "official"
                    else "."
                )
                + " Use device='cpu' or a smaller model."
            )
        else:
            tiling, tile = self.tiling, round_up(max(self.tile // 2, minimum), m)
        overlap = min(self.overlap, tile // 4) if tiling == "blend" else 0
        grid = plan_grid(lay.height, lay.width, tiling, tile, overlap)
        return dataclasses.replace(self, tiling=tiling, tile=tile, overlap=overlap, grid=grid, batch_size=1)


def result_dtype(
    input_dtype: np.dtype, settings: RestoreSettings, out: Any, shape: tuple[int, ...]
) -> np.dtype:
    """Rule 6; also checks that ``out`` (if any) has the input's ``shape``."""
    if out is None:
        return np.dtype(np.float32) if settings.out_dtype == "float32" else np.dtype(input_dtype)
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}; it must equal the input shape {tuple(shape)}.")
    return check_dtype(out.dtype)


def plan_run(
    model: ModelMetadata,
    layout: Layout,
    dtype: np.dtype,
    settings: RestoreSettings,
    *,
    out: Any = None,
    sample: Callable[[], np.ndarray] | None = None,
) -> RunPlan:
    """Plan a run of ``model`` on data of ``layout`` and ``dtype`` by rules 2-7.

    Args:
        model: the model's metadata (``config`` with ``in_chn`` and ``depth``, ``patch_size``,
            ``normalization``).
        layout: the input's layout (rule 1, :meth:`.axes.Layout.create`).
        dtype: the input's dtype (already checked by :func:`.intensity.check_dtype`).
        settings: the run options.
        out: the array the caller will write into, if any (its dtype wins, its shape is checked).
        sample: returns a (C, n) whole-stack sample; called only for ``"auto"`` on float data.
    """
    groups = channel_groups(model.in_channels, layout)
    m = model.size_multiple
    default = model.patch_size
    if model.statistics == "local":
        default = max(LOCAL_TILE, 2 * model.patch_size)
    tile = round_up(max(settings.tile or default, 2 * m), m)
    overlap = settings.overlap
    if overlap is None:
        overlap = default_overlap(tile)
    elif settings.tiling == "blend":
        check_overlap(tile, overlap)
    grid = plan_grid(layout.height, layout.width, settings.tiling, tile, overlap)
    may_be_fixed = dtype.kind == "f" or dtype == np.uint8 or (layout.rgb and dtype.kind in "ui")
    wants_sample = settings.normalization == "auto" and may_be_fixed and sample is not None
    normalization = choose_normalization(
        settings.normalization, dtype, layout.rgb, model.normalization, sample() if wants_sample else None
    )
    return RunPlan(
        layout=layout,
        groups=groups,
        in_channels=model.in_channels,
        size_multiple=m,
        tiling=settings.tiling,
        tile=tile,
        overlap=overlap,
        grid=grid,
        batch_size=settings.batch_size,
        normalization=normalization,
        percentiles=tuple(settings.percentiles),
        normalize_per=settings.normalize_per,
        input_dtype=np.dtype(dtype).name,
        result_dtype=result_dtype(dtype, settings, out, layout.shape).name,
        clip=output_clip(np.dtype(dtype), normalization),
        orientations=orientations_for(model.task, settings.ensemble),
    )
