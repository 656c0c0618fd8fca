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

1. the *global* tile grid of a plane is planned once, exactly as
   :func:`napari_hinet.restore` plans it (:func:`.tiling.plan_grid`);
2. every block gets a halo of one tile on each side (``dask.array.overlap``
   with ``depth`` = tile size, ``boundary="none"``: tiles never leave the image,
   so no reflection is needed at its borders), which holds every global tile
   that touches the block;
3. the block runs those global tiles through the network, weights them with
   the engine's windows (:meth:`.tiling.TileGrid.weights`) in the engine's
   order, divides by the weight sum and keeps its own pixels.

Intensity mappings are also those of the in-memory run: ``"fixed"`` needs no
data; ``"percentile"`` per plane is computed by one small lazy task per chunk
of planes from the same strided sample of the whole plane that the engine uses
(so a block sees the plane's percentiles, not its own); per stack, by one task
from the same <= 64 planes. ``normalization="auto"`` on float data looks at a
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
keeps a module-level cache of :class:`~.restore.Restorer` objects. A model
passed as an ``HINet`` object goes into the graph once, as one shared
dependency (its weights as bytes), not once per task.
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .axes import Layout
from .intensity import (
    MAX_SAMPLES,
    Mapping,
    check_dtype,
    check_finite,
    choose_normalization,
    dtype_range,
    output_clip,
    percentile_mapping,
    to_output,
)
from .tiling import TileGrid, plan_grid

#: Default edge of the Y/X part of a block, in pixels (blocks smaller than 4 tiles are enlarged).
DEFAULT_CHUNK = 2048

# ----------------------------------------------------------------------------- per-process model cache

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()
#: How many models this process has loaded (tests check "once per worker").
LOADS = 0


@dataclass(frozen=True)
class ModelPayload:
    """A model given as an object, serialised once for the task graph (safetensors bytes)."""

    token: str
    data: bytes
    metadata: dict

    @classmethod
    def from_model(cls, model: Any) -> ModelPayload:
        import hashlib

        from safetensors.torch import save

        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        data = save(state)
        meta = dict(getattr(model, "metadata", {}) or {})
        meta["config"] = dict(model.config)
        token = hashlib.sha256(data).hexdigest()[:16]
        return cls(token=token, data=data, metadata=_jsonable(meta))

    def to_model(self) -> Any:
        from safetensors.torch import load

        from ..model import HINet

        net = HINet(**self.metadata["config"])
        net.load_state_dict(load(self.data), strict=True)
        net.metadata = dict(self.metadata)
        return net.eval()


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _cache_key(model: Any, task: str | None, device: str, precision: str, compile: str) -> tuple:  # noqa: A002
    ref = model.token if isinstance(model, ModelPayload) else model
    return (ref, task, str(device), precision, compile)


def get_restorer(
    model: Any,
    task: str | None,
    device: str = "auto",
    precision: str = "auto",
    compile: str = "auto",  # noqa: A002
) -> Any:
    """The cached :class:`~.restore.Restorer` of this process for these arguments (loaded on first use).

    ``model`` is a registry name, a file path (str), ``None`` (the task's
    default) or a :class:`ModelPayload`. One Restorer per process and key.
    """
    global LOADS
    key = _cache_key(model, task, device, precision, compile)
    with _CACHE_LOCK:
        restorer = _CACHE.get(key)
        if restorer is None:
            from .restore import Restorer

            source = model.to_model() if isinstance(model, ModelPayload) else model
            restorer = Restorer(source, task, device=device, precision=precision, compile=compile)
            restorer._lazy_lock = threading.Lock()  # one forward at a time per process and model
            _CACHE[key] = restorer
            LOADS += 1
    return restorer


def clear_cache() -> None:
    """Forget the cached models of this process (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Plan:
    """Everything a block needs besides its data and mappings (plain values, cheap to pickle)."""

    axes: str
    rgb: bool
    height: int
    width: int
    tiling: str
    tile: int
    overlap: int
    tile_h: int
    tile_w: int
    depth_y: int
    depth_x: int
    groups: tuple[tuple[tuple[int, ...], bool], ...]  # (channels, replicate)
    in_channels: int
    batch_size: int | None
    forwards: int
    clip: tuple[float, float] | None
    result_dtype: str
    threads: int  # torch threads of the caller: used by local (threaded) schedulers

    def grid(self) -> TileGrid:
        return plan_grid(self.height, self.width, self.tiling, self.tile, self.overlap)


def _model_ref(model: Any) -> Any:
    """What goes into the graph for ``model``: a str (name/path), None, or a ModelPayload."""
    if model is None or isinstance(model, ModelPayload):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model).expanduser()
        return str(path.resolve()) if path.exists() else str(model)
    from ..model import HINet

    if isinstance(model, HINet):
        return ModelPayload.from_model(model)
    raise TypeError(f"model must be a registry name, a path or a HINet; got {type(model).__name__}.")


def _plane_index(layout: Layout, plane: int) -> tuple[Any, ...]:
    """Index selecting one plane (all Y, X, C) of an array with ``layout``."""
    sizes = [layout.shape[i] for i in layout.plane_axes]
    pos = iter(int(p) for p in np.unravel_index(plane, sizes)) if sizes else iter(())
    return tuple(slice(None) if a in "YXC" else next(pos) for a in layout.axes)


def _strided(image: Any, layout: Layout, step: int) -> Any:
    """``image`` with every ``step``-th row and column (the engine's percentile sample)."""
    index = tuple(slice(None, None, step) if a in "YX" else slice(None) for a in layout.axes)
    return image[index]


def _sample_planes(image: Any, layout: Layout) -> tuple[list[int], int]:
    """The planes and stride of the engine's whole-stack sample (``_Job._sample(None)``)."""
    n = layout.n_planes
    planes = sorted({int(p) for p in np.linspace(0, n - 1, min(64, n))})
    step = max(1, math.ceil(math.sqrt(layout.height * layout.width * len(planes) / MAX_SAMPLES)))
    return planes, step


def _stack_sample(parts: list[np.ndarray], axes: str, rgb: bool) -> np.ndarray:
    """(C, n) sample from per-plane strided blocks (each with Y, X, C whole, plane axes length 1)."""
    flat = []
    for part in parts:
        lay = Layout.create(part.shape, axes, rgb)
        s = lay.read(part, 0, 0, lay.height)
        flat.append(s.reshape(s.shape[0], -1))
    sample = np.concatenate(flat, axis=1)
    check_finite(sample)
    return sample


def _group_maps(sample: np.ndarray, plan_groups: tuple, percentiles: tuple[float, float]) -> np.ndarray:
    """(G, 2) float64 low/high per group from a (C, n) sample."""
    return np.array(
        [
            [m.low, m.high]
            for m in (percentile_mapping(sample[list(ch)], percentiles) for ch, _ in plan_groups)
        ],
        dtype=np.float64,
    )


def _plane_maps_block(
    block: np.ndarray, *, axes: str, rgb: bool, groups: tuple, percentiles: tuple[float, float]
) -> np.ndarray:
    """Object array (planes..., 1...) holding each plane's (G, 2) mapping, from its strided sample."""
    lay = Layout.create(block.shape, axes, rgb)
    out_shape = tuple(1 if a in "YXC" else n for a, n in zip(axes, block.shape, strict=True))
    out = np.empty(out_shape, dtype=object)
    flat = out.reshape(-1)
    for p in range(lay.n_planes):
        s = lay.read(block, p, 0, lay.height)
        sample = s.reshape(s.shape[0], -1)
        check_finite(sample)
        flat[p] = _group_maps(sample, groups, percentiles)
    return out


def _stack_maps(
    parts: list[np.ndarray], axes: str, rgb: bool, groups: tuple, percentiles: tuple
) -> np.ndarray:
    out = np.empty((1,) * len(axes), dtype=object)
    out.reshape(-1)[0] = _group_maps(_stack_sample(parts, axes, rgb), groups, percentiles)
    return out


def _fixed_maps(dtype: np.dtype, n_groups: int, ndim: int) -> np.ndarray:
    low, high = dtype_range(dtype)
    out = np.empty((1,) * ndim, dtype=object)
    out.reshape(-1)[0] = np.array([[low, high]] * n_groups, dtype=np.float64)
    return out


# ----------------------------------------------------------------------------- the block function


class _BatchState:
    """What ``Restorer._run_batch`` needs from a run: the batch size it may lower, and the forward count."""

    def __init__(self, batch_size: int, forwards: int) -> None:
        self.batch_size = batch_size
        self.forwards = forwards


def _restore_block(
    block: np.ndarray,
    maps: np.ndarray,
    *,
    plan: _Plan,
    model: Any,
    task: str | None,
    device: str,
    precision: str,
    compile: str,  # noqa: A002
    block_info: dict | None = None,
) -> np.ndarray:
    """Restore the core of one overlapped block (see the module docstring)."""
    restorer = get_restorer(model, task, device, precision, compile)
    _match_threads(plan.threads)
    location = block_info[None]["array-location"]
    yi, xi = plan.axes.index("Y"), plan.axes.index("X")
    (a, b), (c, d) = location[yi], location[xi]
    y_in = a - plan.depth_y if a > 0 else 0
    x_in = c - plan.depth_x if c > 0 else 0
    lay = Layout.create(block.shape, plan.axes, plan.rgb)
    if block.dtype.kind == "f":
        check_finite(block, f" (rows {y_in}-{y_in + lay.height}, columns {x_in}-{x_in + lay.width})")
    grid = plan.grid()
    rows = [i for i, y0 in enumerate(grid.rows) if y0 < b and y0 + grid.tile_h > a]
    cols = [j for j, x0 in enumerate(grid.cols) if x0 < d and x0 + grid.tile_w > c]
    mappings = [[Mapping(float(lo), float(hi)) for lo, hi in m] for m in _per_plane(maps, lay.n_planes)]
    dtype = np.dtype(plan.result_dtype)
    out_shape = tuple(
        (b - a) if ax == "Y" else (d - c) if ax == "X" else n
        for ax, n in zip(plan.axes, block.shape, strict=True)
    )
    out = np.empty(out_shape, dtype)
    out_lay = Layout.create(out_shape, plan.axes, plan.rgb)

    # the engine's order: plane, tile row, group, tile column
    items = [
        (p, gi, i, j)
        for p in range(lay.n_planes)
        for i in rows
        for gi in range(len(plan.groups))
        for j in cols
    ]
    tile_pixels = grid.tile_h * grid.tile_w
    size = plan.batch_size or restorer._auto_batch(tile_pixels, len(items))
    state = _BatchState(size, plan.forwards)
    acc: dict[tuple[int, int], np.ndarray] = {}
    wsum: dict[tuple[int, int], np.ndarray] = {}
    bands: dict[tuple[int, int], np.ndarray] = {}
    remaining = dict.fromkeys(range(lay.n_planes), len(rows) * len(plan.groups) * len(cols))

    def tile_input(p: int, gi: int, i: int, j: int) -> np.ndarray:
        key = (p, i)
        if key not in bands:
            bands.clear()  # items come row by row: only the current band is needed
            y0 = grid.rows[i] - y_in
            bands[key] = lay.read(block, p, y0, y0 + grid.tile_h)
        channels, replicate = plan.groups[gi]
        x0 = grid.cols[j] - x_in
        raw = bands[key][list(channels), :, x0 : x0 + grid.tile_w]
        tile = mappings[p][gi].forward(raw)
        if replicate:
            tile = np.repeat(tile, plan.in_channels, axis=0)
        return tile

    start = 0
    while start < len(items):
        pending = items[start : start + state.batch_size]
        batch = np.stack([tile_input(*item) for item in pending])
        n = len(pending)
        with restorer._lazy_lock:
            if restorer._compiled and n < state.batch_size:  # keep one compiled shape, as the engine does
                batch = np.concatenate([batch, np.repeat(batch[-1:], state.batch_size - n, axis=0)])
            result = restorer._run_batch(batch, state)[:n]
        for (p, gi, i, j), tile in zip(pending, result, strict=True):
            if plan.groups[gi][1]:
                tile = tile.mean(axis=0, keepdims=True)
            _accumulate(acc, wsum, grid, p, gi, i, j, tile, (a, b, c, d))
            remaining[p] -= 1
            if remaining[p] == 0:  # plane complete: write it and free its sums
                sums = [(acc.pop((p, g)), wsum.pop((p, g))) for g in range(len(plan.groups))]
                _finish_plane(plan, out_lay, out, p, sums, mappings[p], dtype)
                if lay.has_alpha:
                    alpha = lay.read(block, p, a - y_in, b - y_in, c - x_in, d - x_in)[3]
                    out_lay.write(out, p, 3, 0, out_lay.height, alpha.astype(dtype, copy=False))
        start += n
    return out


def _finish_plane(
    plan: _Plan, lay: Layout, out: np.ndarray, plane: int, sums: list, mappings: list, dtype: np.dtype
) -> None:
    """Weighted sums -> data units -> output dtype, as the engine's band emitter does."""
    for (acc, wsum), mapping, (channels, _) in zip(sums, mappings, plan.groups, strict=True):
        values = to_output(mapping.inverse(acc / wsum), dtype, plan.clip)
        for k, ch in enumerate(channels):
            lay.write(out, plane, ch if "C" in plan.axes else None, 0, lay.height, values[k])


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


def _per_plane(maps: np.ndarray, n_planes: int) -> list[np.ndarray]:
    """One (G, 2) mapping per plane of the block (a single map broadcasts)."""
    flat = list(maps.reshape(-1))
    return flat * n_planes if len(flat) == 1 else flat


def _accumulate(
    acc: dict, wsum: dict, grid: TileGrid, p: int, gi: int, i: int, j: int, tile: np.ndarray, core: tuple
) -> None:
    """Add tile (i, j) into the block's core, weighted exactly as :class:`.tiling.BandStitcher` does."""
    a, b, c, d = core
    y0, x0 = grid.rows[i], grid.cols[j]
    ty0, ty1 = max(a, y0), min(b, y0 + grid.tile_h)
    tx0, tx1 = max(c, x0), min(d, x0 + grid.tile_w)
    key = (p, gi)
    if key not in acc:
        acc[key] = np.zeros((tile.shape[0], b - a, d - c), np.float32)
        wsum[key] = np.zeros((b - a, d - c), np.float32)
    part = tile[:, ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    w = grid.weights(i, j)
    target = acc[key][:, ty0 - a : ty1 - a, tx0 - c : tx1 - c]
    if w is None:
        target += part
        wsum[key][ty0 - a : ty1 - a, tx0 - c : tx1 - c] += 1.0
    else:
        w = w[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
        target += part * w
        wsum[key][ty0 - a : ty1 - a, tx0 - c : tx1 - c] += w


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
    axes: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    tiling: str = "blend",
    progress: Any = None,
    cancel: Any = None,
    out: Any = None,
    out_dtype: str | None = None,
    normalization: str = "auto",
    percentiles: tuple[float, float] = (1.0, 99.8),
    normalize_per: str = "plane",
    rgb: bool | None = None,
    compile: str = "auto",  # noqa: A002
    chunk_size: int | None = None,
) -> Any:
    """Restore a dask array lazily; same arguments and result as :func:`napari_hinet.restore`.

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

    dtype = check_dtype(image.dtype)
    layout = Layout.create(tuple(image.shape), axes, rgb)
    ref = _model_ref(model)
    try:
        planner = get_restorer(ref, task, device, precision, compile)
    except ValueError:
        # e.g. device="cuda" on a client without a GPU: plan with a CPU copy, blocks use ``device``
        planner = get_restorer(ref, task, "cpu", "fp32", "off")
    opts = planner._options(tile, overlap, batch_size, tiling, normalization, percentiles, normalize_per)
    groups = tuple((g.channels, g.replicate) for g in planner._groups(layout))
    if out_dtype not in (None, "float32"):
        raise ValueError(f"out_dtype={out_dtype!r} is not valid; use None or 'float32'.")
    result_dtype = np.dtype(np.float32) if out_dtype == "float32" else dtype
    if out is not None:
        result_dtype = check_dtype(out.dtype)
        if tuple(out.shape) != layout.shape:
            raise ValueError(
                f"out has shape {tuple(out.shape)}; it must equal the input shape {layout.shape}."
            )

    grid = plan_grid(layout.height, layout.width, opts.tiling, opts.tile, opts.overlap)
    yi, xi = layout.axes.index("Y"), layout.axes.index("X")
    depth_y = grid.tile_h if len(grid.rows) > 1 else layout.height
    depth_x = grid.tile_w if len(grid.cols) > 1 else layout.width
    chunks = list(image.chunks)
    chunks[yi] = _yx_chunks(layout.height, depth_y, chunk_size)
    chunks[xi] = _yx_chunks(layout.width, depth_x, chunk_size)
    if "C" in layout.axes:
        chunks[layout.axes.index("C")] = (layout.channels,)
    x = image.rechunk(tuple(chunks)) if tuple(chunks) != image.chunks else image

    normalization_used = _resolve_normalization(x, layout, dtype, opts.normalization, planner)
    n_groups = len(groups)
    if normalization_used == "fixed":
        maps: Any = da.from_array(_fixed_maps(dtype, n_groups, x.ndim), chunks=(1,) * x.ndim)
    elif opts.normalize_per == "stack":
        planes, step = _sample_planes(x, layout)
        src = clone(x)  # sampled from its own reads: the sample does not pin input chunks in memory
        parts = [_strided(src[_plane_index(layout, p)][_keep_dims(layout)], layout, step) for p in planes]
        stack = dask.delayed(_stack_maps, pure=True)(parts, layout.axes, layout.rgb, groups, opts.percentiles)
        maps = da.from_delayed(stack, shape=(1,) * x.ndim, dtype=object, meta=np.empty((0,) * x.ndim, object))
    else:
        step = max(1, math.ceil(math.sqrt(layout.height * layout.width / MAX_SAMPLES)))
        # The maps read the input separately (a clone of its graph): sharing the chunks with the
        # restore tasks would let dask keep every chunk whose plane was sampled but not yet restored.
        sample = _strided(clone(x), layout, step)
        sample = sample.rechunk({i: -1 for i, a in enumerate(layout.axes) if a in "YXC"})
        maps = sample.map_blocks(
            _plane_maps_block,
            chunks=tuple((1,) if a in "YXC" else c for a, c in zip(layout.axes, sample.chunks, strict=True)),
            dtype=object,
            meta=np.empty((0,) * x.ndim, object),
            axes=layout.axes,
            rgb=layout.rgb,
            groups=groups,
            percentiles=opts.percentiles,
        )

    tile_pixels = grid.tile_h * grid.tile_w
    total_tiles = layout.n_planes * n_groups * grid.n_tiles
    plan = _Plan(
        axes=layout.axes,
        rgb=layout.rgb,
        height=layout.height,
        width=layout.width,
        tiling=opts.tiling,
        tile=opts.tile,
        overlap=opts.overlap,
        tile_h=grid.tile_h,
        tile_w=grid.tile_w,
        depth_y=depth_y if len(x.chunks[yi]) > 1 else 0,
        depth_x=depth_x if len(x.chunks[xi]) > 1 else 0,
        groups=groups,
        in_channels=planner.in_channels,
        batch_size=opts.batch_size,
        forwards=total_tiles // max(1, opts.batch_size or planner._auto_batch(tile_pixels, total_tiles)),
        clip=output_clip(dtype, normalization_used),
        result_dtype=result_dtype.name,
        threads=_torch_threads(),
    )
    depth = {yi: plan.depth_y, xi: plan.depth_x}
    xo = da.overlap.overlap(x, depth=depth, boundary="none") if any(depth.values()) else x
    model_arg = dask.delayed(ref, pure=True) if isinstance(ref, ModelPayload) else ref
    result = da.map_blocks(
        _restore_block,
        xo,
        maps,
        chunks=x.chunks,
        dtype=result_dtype,
        meta=np.empty((0,) * x.ndim, result_dtype),
        name="hinet-restore-" + dask.base.tokenize(x, maps, plan, ref, task, device, precision, compile),
        plan=plan,
        model=model_arg,
        task=task,
        device=str(device),
        precision=precision,
        compile=compile,
    )
    if out is None:
        if progress is not None or cancel is not None:
            warnings.warn(
                "restore_dask: progress and cancel are used only with out=; a lazy result reports "
                "progress through dask (e.g. dask.diagnostics.ProgressBar or the distributed dashboard).",
                stacklevel=2,
            )
        return result
    _store(result, out, progress, cancel)
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _keep_dims(layout: Layout) -> tuple[Any, ...]:
    """Index that restores the plane axes (as length 1) after integer indexing of one plane."""
    return tuple(slice(None) if a in "YXC" else None for a in layout.axes)


def _resolve_normalization(x: Any, layout: Layout, dtype: np.dtype, requested: str, planner: Any) -> str:
    """The engine's "auto" rule; float data is sampled now (as the engine samples it)."""
    sample = None
    if requested == "auto" and dtype.kind == "f":
        planes, step = _sample_planes(x, layout)
        parts = [
            np.asarray(_strided(x[_plane_index(layout, p)][_keep_dims(layout)], layout, step).compute())
            for p in planes
        ]
        sample = _stack_sample(parts, layout.axes, layout.rgb)
    return choose_normalization(requested, dtype, layout.rgb, planner.metadata.get("normalization"), sample)


def _store(result: Any, out: Any, progress: Any, cancel: Any) -> None:
    """Compute ``result`` into ``out`` block by block, with progress and cancel on local schedulers."""
    import dask.array as da
    from dask.callbacks import Callback

    from .restore import Cancelled, _is_cancelled

    class _Hooks(Callback):
        def _start_state(self, dsk: Any, state: Any) -> None:
            self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self.done = 0
            if progress is not None:
                progress(0, self.total)

        def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
            if _is_cancelled(cancel):
                raise Cancelled()

        def _posttask(self, key: Any, res: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            self.done += 1
            if progress is not None:
                progress(self.done, self.total)

    with _Hooks():
        da.store(result, out, lock=False)
