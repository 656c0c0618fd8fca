"""Lazy restoration of dask arrays: the engine's tiling, one dask block at a time.

:func:`restore_dask` returns a lazy dask array with the input's shape and
chunks (Y/X chunks may be enlarged, see ``chunk_size``). Nothing runs until it
is computed, stored (``to_zarr``/``da.store``) or viewed in napari, and then
each output block is computed on its own, so stacks larger than memory work.

How a block is computed (why the result equals the in-memory one)
----------------------------------------------------------------
HINet's half instance normalisation makes a tile's output depend on the whole
tile, so a block cannot simply be restored as a small image: its tiles would
sit elsewhere than in the in-memory run and the result would differ. Instead:

1. the run is planned once, by the same :func:`.plan.plan_run` as the
   in-memory engine (global tile grid, groups, normalisation, clip);
2. every block gets a halo of one tile on each side (``dask.array.overlap``
   with ``depth`` = tile size, ``boundary="none"``: tiles never leave the image,
   so no reflection is needed at its borders), which holds every global tile
   that touches the block;
3. the block runs those global tiles through the engine's one tile loop
   (:func:`.runner.run_tiles`, same :class:`.runner.TileSource` and
   :class:`.batching.BatchPolicy`) into a :class:`BlockSink`, whose
   :class:`.tiling.TileAccumulator` (the one the in-memory
   :class:`.tiling.BandStitcher` uses) keeps the block's own pixels.

Intensity mappings are also those of the in-memory run (:mod:`.mappings`):
``"fixed"`` needs no data; ``"percentile"`` per plane is computed by one small
lazy task per chunk of planes from the same strided sample of the whole plane
that the engine uses (so a block sees the plane's percentiles, not its own);
per stack, by one task from the same <= 64 planes. ``normalization="auto"`` on float data looks at a
sample when :func:`restore_dask` is called (like the engine does), to decide.

The result therefore equals ``restore(image.compute(), ...)`` up to float
rounding: the same tiles, weights, sums and mapping; only the batch
composition of the forward passes differs, which can change the last bits of
a float32 convolution. Integer outputs then differ by at most 1 at a few
pixels where a value lies at .5; ``tests/engine/test_lazy.py`` measures it.

Cost: tiles that straddle a block border are computed by both blocks. With the
default 2048-pixel blocks and 256-pixel tiles that is about 25 % more tiles
than the in-memory run; larger ``chunk_size`` means less.

The model is loaded once per process (per worker on a dask.distributed
cluster): the graph carries the model *name or path* and the block function
takes its :class:`~.predictor.Predictor` from the per-process cache
(:mod:`.cache`). A model passed as an ``HINet`` object goes into the graph
once, as one shared dependency (its weights as bytes), not once per task.

This module uses only public names of the engine and does not import
:mod:`.restore`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dask_support import dask_progress
from ..settings import RestoreSettings
from .axes import Layout
from .batching import BatchPolicy, TileTooLarge
from .cache import ModelPayload, clear_cache, get_predictor, model_ref
from .intensity import check_dtype, check_finite
from .mappings import fixed_mappings, flatten_sample, group_mappings, sample_step, stack_planes
from .plan import RunPlan, plan_run
from .runner import Cancelled, TileSource, copy_alpha, is_cancelled, run_tiles, write_rows
from .tiling import TileAccumulator

__all__ = ["DEFAULT_CHUNK", "BlockPlan", "BlockSink", "ModelPayload", "clear_cache", "restore_dask"]

#: Default edge of the Y/X part of a block, in pixels (blocks smaller than 4 tiles are enlarged).
DEFAULT_CHUNK = 2048


@dataclass(frozen=True)
class BlockPlan:
    """What every block needs besides its data and mappings (plain values, cheap to pickle).

    Attributes:
        run: the run plan (the in-memory engine's, for the whole input).
        depth_y, depth_x: halo of the overlapped blocks (0 where an axis is one chunk).
        threads: torch threads of the caller (used by local, threaded schedulers).
    """

    run: RunPlan
    depth_y: int
    depth_x: int
    threads: int


# ----------------------------------------------------------------------------- mappings as dask tasks


def _plane_index(layout: Layout, plane: int) -> tuple[Any, ...]:
    """Index selecting one plane (all Y, X, C) of an array with ``layout``, plane axes kept (length 1)."""
    sizes = [layout.shape[i] for i in layout.plane_axes]
    pos = iter(int(p) for p in np.unravel_index(plane, sizes)) if sizes else iter(())
    index: list[Any] = []
    for a in layout.axes:
        q = None if a in "YXC" else next(pos)
        index.append(slice(None) if q is None else slice(q, q + 1))
    return tuple(index)


def _strided(image: Any, layout: Layout, step: int) -> Any:
    """``image`` with every ``step``-th row and column (the engine's percentile sample)."""
    index = tuple(slice(None, None, step) if a in "YX" else slice(None) for a in layout.axes)
    return image[index]


def _part_samples(parts: list[np.ndarray], lay: Layout) -> np.ndarray:
    """(C, n) sample from strided one-plane parts (plane axes of length 1)."""
    return flatten_sample(
        [Layout.create(p.shape, lay.axes, lay.rgb).read(p, 0, 0, p.shape[lay.axes.index("Y")]) for p in parts]
    )


def _object_array(values: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for k, v in enumerate(values):
        out[k] = v
    return out.reshape(shape)


def _plane_maps_block(block: np.ndarray, *, run: RunPlan) -> np.ndarray:
    """Object array (planes..., 1...) holding each plane's group mappings, from its strided sample."""
    axes = run.layout.axes
    lay = Layout.create(block.shape, axes, run.layout.rgb)
    maps = [
        group_mappings(run, flatten_sample([lay.read(block, p, 0, lay.height)])) for p in range(lay.n_planes)
    ]
    return _object_array(maps, tuple(1 if a in "YXC" else n for a, n in zip(axes, block.shape, strict=True)))


def _stack_maps(parts: list[np.ndarray], run: RunPlan) -> np.ndarray:
    return _object_array([group_mappings(run, _part_samples(parts, run.layout))], (1,) * len(run.layout.axes))


# ----------------------------------------------------------------------------- the block function


class BlockSink:
    """Sink of one dask block: keeps the block's own pixels (its *core*) of every tile.

    Args:
        run: the run plan.
        out: the block's output array; ``out_layout`` describes it.
        mappings: per block plane, one mapping per group.
        core: rows ``a:b`` and columns ``c:d`` of the block's core in plane coordinates.
        block, layout, origin: the overlapped input block, its layout and its first
            pixel in plane coordinates (alpha is copied from it).
    """

    def __init__(
        self,
        run: RunPlan,
        out: np.ndarray,
        out_layout: Layout,
        mappings: list[Any],
        core: tuple[int, int, int, int],
        block: np.ndarray,
        layout: Layout,
        origin: tuple[int, int],
    ) -> None:
        self.run, self.out, self.out_layout, self.mappings = run, out, out_layout, mappings
        self.core, self.block, self.layout, self.origin = core, block, layout, origin
        self._sums: dict[tuple[int, int], TileAccumulator] = {}

    def add(self, plane: int, group: int, i: int, j: int, tile: np.ndarray) -> None:
        acc = self._sums.get((plane, group))
        if acc is None:
            a, b, c, d = self.core
            acc = self._sums[(plane, group)] = TileAccumulator(
                self.run.grid, tile.shape[0], a, c, b - a, d - c
            )
        acc.add(i, j, tile)

    def plane_done(self, plane: int) -> None:
        height = self.out_layout.height
        for g in range(len(self.run.groups)):
            band = self._sums.pop((plane, g)).result()
            write_rows(
                self.run, self.out_layout, self.out, plane, g, self.mappings[plane][g], 0, height, band
            )
        if self.layout.has_alpha:
            a, b, c, d = self.core
            y, x = self.origin
            dtype = np.dtype(self.run.result_dtype)
            copy_alpha(
                self.layout,
                self.block,
                self.out_layout,
                self.out,
                plane,
                (a - y, b - y),
                (c - x, d - x),
                dtype,
            )


def _restore_block(
    block: np.ndarray,
    maps: np.ndarray,
    *,
    plan: BlockPlan,
    model: Any,
    task: str | None,
    device: str,
    precision: str,
    compile: str,  # noqa: A002
    backend: str = "auto",
    stats: str = "auto",
    block_info: dict | None = None,
) -> np.ndarray:
    """Restore the core of one overlapped block (see the module docstring)."""
    predictor = get_predictor(model, task, device, precision, compile, backend, stats)
    _match_threads(plan.threads)
    run = plan.run
    axes = run.layout.axes
    location = block_info[None]["array-location"]
    (a, b), (c, d) = location[axes.index("Y")], location[axes.index("X")]
    y_in = a - plan.depth_y if a > 0 else 0
    x_in = c - plan.depth_x if c > 0 else 0
    lay = Layout.create(block.shape, axes, run.layout.rgb)
    if block.dtype.kind == "f":
        check_finite(block, f" (rows {y_in}-{y_in + lay.height}, columns {x_in}-{x_in + lay.width})")
    grid = run.grid
    rows = [i for i, y0 in enumerate(grid.rows) if y0 < b and y0 + grid.tile_h > a]
    cols = [j for j, x0 in enumerate(grid.cols) if x0 < d and x0 + grid.tile_w > c]
    flat = list(maps.reshape(-1))
    mappings = flat * lay.n_planes if len(flat) == 1 else flat
    out_shape = tuple(
        (b - a) if ax == "Y" else (d - c) if ax == "X" else n for ax, n in zip(axes, block.shape, strict=True)
    )
    out = np.empty(out_shape, np.dtype(run.result_dtype))
    out_lay = Layout.create(out_shape, axes, run.layout.rgb)
    source = TileSource(run, block, lay, lambda p: mappings[p], origin=(y_in, x_in))
    sink = BlockSink(run, out, out_lay, mappings, (a, b, c, d), block, lay, (y_in, x_in))
    total = lay.n_planes * len(rows) * len(run.groups) * len(cols)
    policy = BatchPolicy(predictor, run.batch_size, grid.tile_h * grid.tile_w, total, probe=False)
    try:
        for _ in run_tiles(run, policy, source, sink, rows=rows, cols=cols, n_planes=lay.n_planes):
            pass
    except TileTooLarge:
        raise MemoryError(
            f"One {grid.tile_h}x{grid.tile_w} tile does not fit in the memory of {predictor.device}; "
            "pass a smaller tile= or device='cpu'."
        ) from None
    return out


def _on_distributed_worker() -> bool:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _match_threads(threads: int) -> None:
    """Run a local scheduler's thread with the caller's torch threads.

    A dask pool thread keeps the thread count it was created with, and a
    different count changes the summation order inside convolutions (last
    bits). Workers of a distributed cluster keep their own setting.
    """
    import torch

    if torch.get_num_threads() != threads and not _on_distributed_worker():
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- public


def _yx_chunks(n: int, depth: int, chunk_size: int | None) -> tuple[int, ...]:
    """Regular chunks of about ``chunk_size`` (default 2048) pixels along Y or X, each >= the halo depth.

    Regular (all equal but the last) so that ``to_zarr`` needs no rechunking.
    """
    if n <= depth:
        return (n,)
    target = max(chunk_size or DEFAULT_CHUNK, depth)
    count = max(1, min(round(n / target), n // depth))
    size = -(-n // count)
    chunks = [size] * (n // size)
    rest = n - sum(chunks)
    if rest:
        if rest < depth:
            chunks[-1] += rest  # a halo must fit inside the neighbouring chunk
        else:
            chunks.append(rest)
    return tuple(chunks)


def restore_dask(
    image: Any,
    model: Any = None,
    task: str | None = None,
    *,
    settings: RestoreSettings | None = None,
    progress: Any = None,
    cancel: Any = None,
    out: Any = None,
    chunk_size: int | None = None,
    **options: Any,
) -> Any:
    """Restore a dask array lazily; same arguments and result as :func:`napari_hinet.restore`.

    ``settings``/``options``: a :class:`~napari_hinet.settings.RestoreSettings`
    and fields overriding it, as for :func:`napari_hinet.restore`.
    ``chunk_size``: edge of the Y/X part of a block in pixels (default :data:`DEFAULT_CHUNK`).

    Returns a dask array of the input's shape and dtype (``float32`` with
    ``out_dtype="float32"``). Its Y/X chunks are at least four tiles (or
    ``chunk_size`` pixels) and any channel axis is one chunk; other axes keep
    the input's chunks. With ``out`` (a zarr or numpy array of the input's
    shape) the result is computed into ``out`` now and ``out`` is returned;
    only then are ``progress(done, total)`` (in dask tasks, local schedulers)
    and ``cancel`` used.

    ``device`` is resolved where the blocks run (each worker picks its own
    "auto" device). See the module docstring for how blocks reproduce the
    in-memory tiling and what "equal" means.
    """
    import dask
    import dask.array as da
    from dask.graph_manipulation import clone

    settings = RestoreSettings.build(settings, **options)
    model = settings.model if model is None else model
    task = settings.task if task is None else task
    device, precision, compile_mode = str(settings.device), settings.precision, settings.compile
    dtype = check_dtype(image.dtype)
    layout = Layout.create(tuple(image.shape), settings.axes, settings.rgb)
    ref = model_ref(model)
    try:
        planner = get_predictor(ref, task, device, precision, compile_mode, settings.backend, settings.stats)
    except ValueError:
        # e.g. device="cuda" on a client without a GPU: plan with a CPU copy, blocks use ``device``
        planner = get_predictor(ref, task, "cpu", "fp32", "off", "torch", settings.stats)

    def sample() -> np.ndarray:  # "auto" on float data: the engine's whole-stack sample, now
        planes = stack_planes(layout.n_planes)
        step = sample_step(layout.height, layout.width, len(planes))
        parts = dask.compute(*[_strided(image[_plane_index(layout, p)], layout, step) for p in planes])
        return _part_samples([np.asarray(p) for p in parts], layout)

    run = plan_run(planner.info, layout, dtype, settings, out=out, sample=sample)

    grid = run.grid
    yi, xi = layout.axes.index("Y"), layout.axes.index("X")
    depth_y = grid.tile_h if len(grid.rows) > 1 else layout.height
    depth_x = grid.tile_w if len(grid.cols) > 1 else layout.width
    chunks = list(image.chunks)
    chunks[yi] = _yx_chunks(layout.height, depth_y, chunk_size)
    chunks[xi] = _yx_chunks(layout.width, depth_x, chunk_size)
    if "C" in layout.axes:
        chunks[layout.axes.index("C")] = (layout.channels,)
    x = image.rechunk(tuple(chunks)) if tuple(chunks) != image.chunks else image

    ndim = x.ndim
    meta = np.empty((0,) * ndim, object)
    if run.normalization == "fixed":
        maps: Any = da.from_array(_object_array([fixed_mappings(run)], (1,) * ndim), chunks=(1,) * ndim)
    elif run.normalize_per == "stack":
        planes = stack_planes(layout.n_planes)
        step = sample_step(layout.height, layout.width, len(planes))
        src = clone(x)  # sampled from its own reads: the sample does not pin input chunks in memory
        parts = [_strided(src[_plane_index(layout, p)], layout, step) for p in planes]
        stack = dask.delayed(_stack_maps, pure=True)(parts, run)
        maps = da.from_delayed(stack, shape=(1,) * ndim, dtype=object, meta=meta)
    else:
        step = sample_step(layout.height, layout.width)
        # The maps read the input separately (a clone of its graph): sharing the chunks with the
        # restore tasks would let dask keep every chunk whose plane was sampled but not yet restored.
        strided = _strided(clone(x), layout, step)
        strided = strided.rechunk({i: -1 for i, a in enumerate(layout.axes) if a in "YXC"})
        maps = strided.map_blocks(
            _plane_maps_block,
            chunks=tuple((1,) if a in "YXC" else c for a, c in zip(layout.axes, strided.chunks, strict=True)),
            dtype=object,
            meta=meta,
            run=run,
        )

    plan = BlockPlan(
        run=run,
        depth_y=depth_y if len(x.chunks[yi]) > 1 else 0,
        depth_x=depth_x if len(x.chunks[xi]) > 1 else 0,
        threads=_torch_threads(),
    )
    depth = {yi: plan.depth_y, xi: plan.depth_x}
    xo = da.overlap.overlap(x, depth=depth, boundary="none") if any(depth.values()) else x
    model_arg = dask.delayed(ref, pure=True) if isinstance(ref, ModelPayload) else ref
    result_dtype = np.dtype(run.result_dtype)
    result = da.map_blocks(
        _restore_block,
        xo,
        maps,
        chunks=x.chunks,
        dtype=result_dtype,
        meta=np.empty((0,) * ndim, result_dtype),
        name="hinet-restore-"
        + dask.base.tokenize(
            x, maps, plan, ref, task, device, precision, compile_mode, settings.backend, settings.stats
        ),
        plan=plan,
        model=model_arg,
        task=task,
        device=device,
        precision=precision,
        compile=compile_mode,
        backend=settings.backend,
        stats=settings.stats,
    )
    if out is None:
        if progress is not None or cancel is not None:
            import warnings

            warnings.warn(
                "restore_dask: progress and cancel are used only with out=; a lazy result reports "
                "progress through dask (e.g. dask.diagnostics.ProgressBar or the distributed dashboard).",
                stacklevel=2,
            )
        return result

    def check_cancel() -> None:
        if is_cancelled(cancel):
            raise Cancelled()

    with dask_progress(progress, before_task=check_cancel):
        da.store(result, out, lock=False)
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
