"""restore(), Restorer and Cancelled: the restoration engine's public API.

A run goes like this (see docs/engine.md for the rules in full):

1. the axes are guessed or checked (:mod:`.axes`), the dtype is checked and the
   intensity mapping is chosen (:mod:`.intensity`);
2. each 2-D plane (every Z, T... index) is split into channel *groups* that the
   network takes as input (RGB as one group; otherwise one group per channel,
   replicated to the model's channel count and averaged back);
3. each (plane, group) is cut into tiles (:mod:`.tiling`), tiles are batched
   across rows, groups and planes, run through the network, and merged band
   by band into the output, which is written as soon as a band is final.

The host holds the input, the output and a few bands of tiles; the device
holds the model and one batch of tiles.
"""

from __future__ import annotations

import copy
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

from ..model import HINet
from ..model.padding import pad_to_valid
from .axes import Layout
from .devices import (
    default_threads,
    describe_device,
    free_memory,
    is_out_of_memory,
    precision_name,
    resolve_device,
    resolve_precision,
)
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
from .tiling import TILINGS, BandStitcher, TileGrid, plan_grid, round_up

ProgressCallback = Callable[[int, int], Any]
#: ``cancel=``: an Event (set = cancel), a callable returning True to cancel, or None.
CancelToken = Union[threading.Event, Callable[[], bool], None]  # noqa: UP007 (runtime alias)

#: ``compile="auto"`` compiles on the CPU only for runs with at least this many forwards of one
#: tile shape; ``None`` = never (the current choice). Measured (docs/performance.md): compiling
#: saves ~12 % per forward on an idle machine but costs 10-60 s up front, and its many small
#: OpenMP regions made it ~5x slower than eager while other processes shared the cores.
COMPILE_MIN_FORWARDS: int | None = None
#: Default CPU batch: enough tiles for about this many pixels per forward (small tiles batch up).
CPU_BATCH_PIXELS = 256 * 256
#: At most this many tiles per forward on any device.
MAX_BATCH = 64
#: ``precision="auto"`` keeps bf16/fp16 only if its self-check is at least this close to float32.
PRECISION_MIN_PSNR_DB = 45.0


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


class _TileTooLarge(Exception):
    """Internal: one tile does not fit the device memory; retry with smaller tiles."""


def is_dask_array(obj: Any) -> bool:
    """True for a dask array (checked without importing dask)."""
    return type(obj).__module__.startswith("dask") and hasattr(obj, "dask") and hasattr(obj, "chunks")


def _is_cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _as_array(image: Any) -> Any:
    """numpy/zarr/h5py-like arrays pass through; torch tensors and sequences become numpy."""
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    if hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "__getitem__"):
        return image
    return np.asarray(image)


@dataclass(frozen=True)
class _Group:
    """Data channels that form one network input; ``replicate`` = one channel copied to all inputs."""

    channels: tuple[int, ...]
    replicate: bool

    @property
    def out_channels(self) -> int:
        return len(self.channels)


@dataclass
class _Options:
    """Per-call options after validation."""

    tile: int
    overlap: int
    tiling: str
    batch_size: int | None
    normalization: str
    percentiles: tuple[float, float]
    normalize_per: str


class Restorer:
    """A model loaded on a device, ready for repeated :meth:`restore` calls.

    Args:
        model: registry name, file path or an :class:`~napari_hinet.HINet`
            (``None``: the default model of ``task``). A passed-in module is
            copied, so later changes to its weights are not seen: make a new
            Restorer (or call :func:`restore`) after training further.
        task: ``"denoise"`` (default), ``"deblur"`` or ``"derain"``; used when ``model`` is None.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` (see :mod:`.devices`).
        compile: ``"on"`` runs ``torch.compile`` (inductor, frozen weights; needs a C++
            compiler; a failed compile falls back to eager with a warning), ``"off"``
            never; ``"auto"`` follows :data:`COMPILE_MIN_FORWARDS` (currently: off).

    Attributes:
        device: the ``torch.device`` in use.
        dtype: compute dtype (``torch.float32`` means no autocast).
        metadata: the model's metadata dict (name, task, patch_size...).
    """

    def __init__(
        self,
        model: str | HINet | None = None,
        task: str | None = None,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        compile: str = "auto",  # noqa: A002 (mirrors torch.compile)
    ) -> None:
        if compile not in ("auto", "on", "off"):
            raise ValueError(f"compile={compile!r} is not valid; choose 'auto', 'on' or 'off'.")
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.compile_mode = compile
        if self.device.type == "cpu" and torch.get_num_threads() > default_threads():
            torch.set_num_threads(default_threads())
        source, owned = self._load(model, task)
        self.metadata: dict[str, Any] = dict(getattr(source, "metadata", {}) or {})
        self.config: dict[str, Any] = dict(source.config)  # before size_multiple is used
        #: Result of the low-precision self-check (``precision="auto"`` only): PSNR in dB of a
        #: low-precision forward against float32 on a fixed synthetic image, and whether it passed.
        self.precision_check: dict[str, Any] | None = None
        if precision == "auto" and self.dtype != torch.float32:
            self.precision_check = self._check_precision(source)
            if not self.precision_check["passed"]:
                warnings.warn(
                    f"{precision_name(self.dtype)} on {self.device} is only "
                    f"{self.precision_check['psnr_db']:.1f} dB from float32 for this model "
                    f"(needs >= {PRECISION_MIN_PSNR_DB} dB); using fp32.",
                    stacklevel=2,
                )
                self.dtype = torch.float32
        self.net = self._prepare(source, owned)
        self._compiled: dict[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._compile_failed = False

    # ------------------------------------------------------------ model
    @staticmethod
    def _load(model: Any, task: str | None) -> tuple[HINet, bool]:
        if isinstance(model, HINet):
            return model, False
        if isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a HINet, a registry name or a path; got {type(model).__name__}.")
        from ..checkpoints import load_model

        if model is None:
            from ..registry import default_model

            model = default_model(task or "denoise")
        return load_model(model), True

    def _prepare(self, source: HINet, owned: bool) -> HINet:
        """The network as run: on the device, eval, channels_last, conv weights in bf16 on a bf16 CPU run."""
        net = source if owned else copy.deepcopy(source)
        net = net.eval().requires_grad_(False).to(self.device)
        net = net.to(memory_format=torch.channels_last)
        for module in net.modules():
            if isinstance(module, torch.nn.LeakyReLU):
                module.inplace = True  # safe: every activation input is a fresh tensor
            if self.device.type == "cpu" and self.dtype == torch.bfloat16:
                # Pre-cast conv weights once (autocast would cast them on every call);
                # norms stay float32 and autocast runs them in float32 as before.
                if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    module.to(torch.bfloat16)
        return net

    def _check_precision(self, source: HINet) -> dict[str, Any]:
        """Compare a low-precision forward with float32 on a fixed 64x64 synthetic image."""
        c = int(source.config["in_chn"])
        y, x = np.mgrid[0:64, 0:64].astype(np.float32)
        rng = np.random.default_rng(0)
        base = 0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0) + 0.1 * (x > 32)
        image = np.clip(base[None] + rng.normal(0, 0.08, (c, 64, 64)), 0, 1).astype(np.float32)
        tensor, _ = pad_to_valid(torch.from_numpy(image)[None].to(self.device), self.size_multiple)
        low = self.dtype
        probe = copy.deepcopy(source).eval().requires_grad_(False).to(self.device)
        with torch.inference_mode():
            reference = probe(tensor)[-1].float()
            self.net = self._prepare(probe, True)  # the low-precision network, as it will run
            result = self._forward_eager(tensor.contiguous(memory_format=torch.channels_last)).float()
        del self.net
        mse = float(((result - reference) ** 2).mean())
        psnr = float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
        return {
            "precision": precision_name(low),
            "psnr_db": round(psnr, 2),
            "passed": psnr >= PRECISION_MIN_PSNR_DB,
        }

    @property
    def in_channels(self) -> int:
        """Channels the network takes (3 for RGB models, 1 for grey)."""
        return int(self.config["in_chn"])

    @property
    def size_multiple(self) -> int:
        """Network input H and W are padded to multiples of this."""
        return 2 ** (int(self.config["depth"]) - 1)

    @property
    def patch_size(self) -> int:
        """Training patch size = default tile (256 unless the metadata says otherwise)."""
        return int(self.metadata.get("patch_size") or 256)

    def describe(self) -> str:
        """One line: model name, device, precision (for logs and the widget)."""
        name = self.metadata.get("name", "HINet")
        return f"{name} on {describe_device(self.device)}, {precision_name(self.dtype)}"

    # ------------------------------------------------------------ forward
    def _forward_eager(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.net(x)[-1]
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.net(x)[-1]

    def _forward_fn(self, shape: tuple[int, ...], forwards: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Eager forward, or a compiled one for ``shape`` when compiling pays off."""
        if shape in self._compiled:
            return self._compiled[shape]
        wanted = self.compile_mode == "on" or (
            self.compile_mode == "auto"
            and self.device.type == "cpu"
            and COMPILE_MIN_FORWARDS is not None
            and forwards >= COMPILE_MIN_FORWARDS
        )
        if not wanted or self._compile_failed:
            return self._forward_eager
        compiled = torch.compile(self._forward_eager, dynamic=False, options={"freezing": True})
        self._compiled[shape] = compiled
        return compiled

    def _forward(self, batch: np.ndarray, forwards: int) -> np.ndarray:
        """(B, C, h, w) float32 in network units -> (B, C, h, w) float32 out_2, any h, w."""
        x = torch.from_numpy(batch).to(self.device)
        x, size = pad_to_valid(x, self.size_multiple)
        x = x.contiguous(memory_format=torch.channels_last)
        fn = self._forward_fn(tuple(x.shape), forwards)
        with torch.inference_mode():
            try:
                y = fn(x)
            except Exception as error:
                if fn is self._forward_eager or is_out_of_memory(error):
                    raise
                warnings.warn(f"torch.compile failed ({error!r:.200}); running without it.", stacklevel=3)
                self._compile_failed = True
                self._compiled.clear()
                y = self._forward_eager(x)
            y = y[..., : size[0], : size[1]].float()
        return y.cpu().numpy()

    def _run_batch(self, batch: np.ndarray, job: _Job) -> np.ndarray:
        """Forward with out-of-memory back-off: halve the batch, then ask for smaller tiles."""
        try:
            return self._forward(batch, job.forwards)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            n = batch.shape[0]
            if n == 1:
                raise _TileTooLarge from error
            half = max(1, n // 2)
            job.batch_size = min(job.batch_size or half, half)
            warnings.warn(
                f"Out of memory with {n} tiles per batch on {self.device}; retrying with {half}.",
                stacklevel=3,
            )
            parts = [self._run_batch(batch[:half], job), self._run_batch(batch[half:], job)]
            return np.concatenate(parts)

    def _auto_batch(self, tile_pixels: int, total: int) -> int:
        if self.device.type != "cuda":
            return max(1, min(MAX_BATCH, CPU_BATCH_PIXELS // max(1, tile_pixels), total))
        return 1  # CUDA: probed from the first batch (see _probe_batch)

    def _probe_batch(self, job: _Job, batch: np.ndarray) -> np.ndarray:
        """CUDA: run one tile, measure its peak memory, size the batch from the free memory."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        result = self._run_batch(batch, job)
        per_tile = max(1, torch.cuda.max_memory_allocated(self.device) - before)
        free = free_memory(self.device) or 0
        job.batch_size = int(max(1, min(MAX_BATCH, 0.7 * free // per_tile)))
        return result

    # ------------------------------------------------------------ public
    def plan(
        self,
        shape: tuple[int, ...],
        *,
        axes: str | None = None,
        rgb: bool | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        tiling: str = "blend",
    ) -> dict[str, Any]:
        """What a run on data of ``shape`` would do, without reading any data.

        Returns a dict with ``axes``, ``rgb``, ``tiling``, ``tile`` and ``overlap``
        (resolved; ``None`` for ``"none"``), ``grid`` (tiles per plane as
        (rows, cols)), ``planes``, ``groups`` (network runs per plane) and
        ``tiles`` (the ``total`` that ``progress`` will report).
        """
        layout = Layout.create(tuple(shape), axes, rgb)
        opts = self._options(tile, overlap, None, tiling, "auto", (1.0, 99.8), "plane")
        grid = plan_grid(layout.height, layout.width, opts.tiling, opts.tile, opts.overlap)
        groups = self._groups(layout)
        return {
            "axes": layout.axes,
            "rgb": layout.rgb,
            "tiling": opts.tiling,
            "tile": None if opts.tiling == "none" else opts.tile,
            "overlap": opts.overlap if opts.tiling == "blend" else None,
            "grid": (len(grid.rows), len(grid.cols)),
            "planes": layout.n_planes,
            "groups": len(groups),
            "tiles": layout.n_planes * len(groups) * grid.n_tiles,
        }

    def restore(
        self,
        image: Any,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken = None,
        **options: Any,
    ) -> Any:
        """Restore ``image``; same shape, and dtype unless ``out_dtype``/``out`` say otherwise.

        ``options`` are those of :meth:`iter_restore`. ``progress(done, total)``
        is called once with ``done=0``, then after every batch of tiles.
        Raises :class:`Cancelled` when ``cancel`` fires (checked before every batch).
        """
        steps = self.iter_restore(image, cancel=cancel, **options)
        while True:
            try:
                done, total = next(steps)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(done, total)

    def iter_restore(
        self,
        image: Any,
        *,
        axes: str | None = None,
        rgb: bool | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        tiling: str = "blend",
        normalization: str = "auto",
        percentiles: tuple[float, float] = (1.0, 99.8),
        normalize_per: str = "plane",
        out: Any = None,
        out_dtype: str | None = None,
        cancel: CancelToken = None,
    ) -> Generator[tuple[int, int], None, Any]:
        """Generator form of :meth:`restore`: yields ``(done, total)`` tiles, returns the result.

        Use it from a napari ``thread_worker``: closing the generator stops the
        run within one batch. The result is the generator's return value
        (``StopIteration.value``).

        Args:
            image: numpy array, zarr array or anything with ``shape``, ``dtype``
                and numpy-style slicing (read one band of tiles at a time); (H, W) >= (1, 1).
            axes: e.g. ``"YX"``, ``"YXC"``, ``"CYX"``, ``"TZYX"``; ``None`` guesses (:func:`.axes.guess_axes`).
            rgb: force the channel axis to be colour (True) or independent channels (False).
            tile: tile edge in pixels (``None``: the model's patch size); rounded up to a multiple of 16.
            overlap: minimum tile overlap in pixels for ``"blend"`` (``None``: ``tile // 4``).
            batch_size: tiles per forward (``None``: automatic).
            tiling: ``"blend"``, ``"official"`` or ``"none"`` (see :mod:`.tiling`).
            normalization: ``"auto"``, ``"fixed"`` or ``"percentile"`` (see :mod:`.intensity`).
            percentiles: (low, high) percentiles for ``"percentile"``.
            normalize_per: ``"plane"`` or ``"stack"``.
            out: array of the input's shape to write into (numpy or zarr); its
                dtype is the output dtype. Bands are written as they finish:
                after :class:`Cancelled` or an error, ``out`` holds the finished
                planes (``Cancelled.planes_done``), part of the current plane,
                and is untouched elsewhere.
            out_dtype: ``None`` (the input dtype) or ``"float32"`` (input units, not rounded).
            cancel: ``threading.Event`` or callable returning True to stop.
        """
        image = _as_array(image)
        dtype = check_dtype(image.dtype)
        layout = Layout.create(tuple(image.shape), axes, rgb)
        opts = self._options(tile, overlap, batch_size, tiling, normalization, percentiles, normalize_per)
        groups = self._groups(layout)
        if isinstance(image, np.ndarray):
            check_finite(image)
        result_dtype = np.dtype(np.float32) if out_dtype == "float32" else dtype
        if out_dtype not in (None, "float32"):
            raise ValueError(f"out_dtype={out_dtype!r} is not valid; use None or 'float32'.")
        if out is None:
            out = np.empty(layout.shape, result_dtype)
        else:
            if tuple(out.shape) != layout.shape:
                raise ValueError(
                    f"out has shape {tuple(out.shape)}; it must equal the input shape {layout.shape}."
                )
            result_dtype = check_dtype(out.dtype)

        job = _Job(self, image, layout, groups, opts, dtype, out, result_dtype)
        while True:
            try:
                yield from job.run(cancel)
                return out
            except _TileTooLarge:
                job.shrink_tiles()

    def _options(
        self,
        tile: int | None,
        overlap: int | None,
        batch_size: int | None,
        tiling: str,
        normalization: str,
        percentiles: tuple[float, float],
        normalize_per: str,
    ) -> _Options:
        if tiling not in TILINGS:
            raise ValueError(f"tiling={tiling!r} is not valid; choose one of {', '.join(TILINGS)}.")
        if normalization not in ("auto", "fixed", "percentile"):
            raise ValueError(
                f"normalization={normalization!r} is not valid; choose 'auto', 'fixed' or 'percentile'."
            )
        if normalize_per not in ("plane", "stack"):
            raise ValueError(f"normalize_per={normalize_per!r} is not valid; choose 'plane' or 'stack'.")
        low, high = (float(p) for p in percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100; got {percentiles!r}.")
        if tile is not None and (not isinstance(tile, int) or tile < 1):
            raise ValueError(f"tile must be a positive integer or None; got {tile!r}.")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
        minimum = 2 * self.size_multiple
        tile = round_up(max(tile or self.patch_size, minimum), self.size_multiple)
        if overlap is None:
            overlap = tile // 4
        elif not isinstance(overlap, int) or not 0 <= overlap < tile:
            raise ValueError(f"overlap must be an integer in [0, tile={tile}); got {overlap!r}.")
        return _Options(tile, overlap, tiling, batch_size, normalization, (low, high), normalize_per)

    def _groups(self, layout: Layout) -> list[_Group]:
        """Channel groups fed to the network (see module docstring and docs/engine.md)."""
        n = self.in_channels
        if layout.rgb:
            if n == 3:
                return [_Group((0, 1, 2), replicate=False)]
            if n == 1:
                return [_Group((c,), replicate=False) for c in range(3)]
            raise ValueError(f"A {n}-channel model cannot restore RGB data; use a 1- or 3-channel model.")
        return [_Group((c,), replicate=n > 1) for c in range(layout.channels)]


class _Job:
    """One restoration run: the tile stream, its batches and the stitching into ``out``."""

    def __init__(
        self,
        restorer: Restorer,
        image: Any,
        layout: Layout,
        groups: list[_Group],
        opts: _Options,
        dtype: np.dtype,
        out: Any,
        result_dtype: np.dtype,
    ) -> None:
        self.r = restorer
        self.image = image
        self.layout = layout
        self.groups = groups
        self.opts = opts
        self.dtype = dtype
        self.out = out
        self.result_dtype = result_dtype
        self.planes_done = 0
        self.grid = self._grid()
        self.batch_size = opts.batch_size
        self.normalization = self._normalization()
        self.clip = output_clip(dtype, self.normalization)
        self._stack_maps = (
            self._stack_mappings()
            if self.normalization == "percentile" and opts.normalize_per == "stack"
            else None
        )
        self._maps: OrderedDict[tuple[int, int], Mapping] = OrderedDict()
        self._bands: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    # ------------------------------------------------------------ planning
    def _grid(self) -> TileGrid:
        o = self.opts
        return plan_grid(self.layout.height, self.layout.width, o.tiling, o.tile, o.overlap)

    @property
    def forwards(self) -> int:
        """Forwards of the main tile shape in the whole run (decides whether compiling pays off)."""
        return self.layout.n_planes * len(self.groups) * self.grid.n_tiles // max(1, self.batch_size or 1)

    def shrink_tiles(self) -> None:
        """After an out-of-memory error with one tile per batch: halve the tile and start the plane again."""
        o = self.opts
        minimum = 2 * self.r.size_multiple
        if o.tiling == "none":
            o.tiling, o.tile = (
                "blend",
                round_up(max(self.layout.height, self.layout.width) // 2, self.r.size_multiple),
            )
        elif o.tiling == "official" or o.tile <= minimum:
            raise MemoryError(
                f"One {self.grid.tile_h}x{self.grid.tile_w} tile does not fit in the memory of {self.r.device}"
                + (
                    "; official tiling cannot change its crop size, use tiling='blend'."
                    if o.tiling == "official"
                    else "."
                )
                + " Use device='cpu' or a smaller model."
            )
        else:
            o.tile = round_up(max(o.tile // 2, minimum), self.r.size_multiple)
        o.overlap = min(o.overlap, o.tile // 4) if o.tiling == "blend" else 0
        self.grid = self._grid()
        self.batch_size = 1
        self._bands.clear()
        warnings.warn(
            f"Out of memory with one tile on {self.r.device}; retrying with {o.tile}x{o.tile} tiles "
            f"from plane {self.planes_done}.",
            stacklevel=4,
        )

    def _sample(self, plane: int | None) -> np.ndarray:
        """(C, n) strided sample of one plane, or of up to 64 evenly spaced planes (``None``)."""
        lay = self.layout
        if plane is None:
            planes = sorted({int(p) for p in np.linspace(0, lay.n_planes - 1, min(64, lay.n_planes))})
        else:
            planes = [plane]
        step = max(1, math.ceil(math.sqrt(lay.height * lay.width * len(planes) / MAX_SAMPLES)))
        parts = [lay.read(self.image, p, 0, lay.height, step=step) for p in planes]
        sample = np.concatenate([s.reshape(s.shape[0], -1) for s in parts], axis=1)
        check_finite(sample)
        return sample

    def _normalization(self) -> str:
        requested = self.opts.normalization
        sample = None
        if requested == "auto" and self.dtype.kind == "f":
            sample = self._sample(None)
        return choose_normalization(
            requested, self.dtype, self.layout.rgb, self.r.metadata.get("normalization"), sample
        )

    def _stack_mappings(self) -> dict[int, Mapping]:
        sample = self._sample(None)
        return {
            g: percentile_mapping(sample[list(grp.channels)], self.opts.percentiles)
            for g, grp in enumerate(self.groups)
        }

    def _mapping(self, plane: int, g: int) -> Mapping:
        if self.normalization == "fixed":
            return Mapping(*dtype_range(self.dtype))
        if self._stack_maps is not None:
            return self._stack_maps[g]
        if (plane, g) not in self._maps:  # first use of this plane: one sample for all groups
            sample = self._sample(plane)
            for gi, grp in enumerate(self.groups):
                self._maps[(plane, gi)] = percentile_mapping(
                    sample[list(grp.channels)], self.opts.percentiles
                )
            # Keep the planes a batch can still touch (a batch may span many small planes).
            while len(self._maps) > len(self.groups) * (2 * (self.batch_size or 1) + 2):
                self._maps.popitem(last=False)
        return self._maps[(plane, g)]

    # ------------------------------------------------------------ data
    def _band(self, plane: int, row: int, g: int) -> np.ndarray:
        """Normalised rows of tile-row ``row`` for group ``g``: (group channels, tile_h, W) float32."""
        key = (plane, row, g)
        band = self._bands.get(key)
        if band is None:
            y0 = self.grid.rows[row]
            raw = self.layout.read(self.image, plane, y0, y0 + self.grid.tile_h)
            if not isinstance(self.image, np.ndarray):
                check_finite(raw, f" (plane {plane}, rows {y0}-{y0 + self.grid.tile_h})")
            for gi, grp in enumerate(self.groups):
                data = raw[list(grp.channels)]
                self._bands[(plane, row, gi)] = self._mapping(plane, gi).forward(data)
            while len(self._bands) > 4 * len(self.groups) * max(
                1, (self.batch_size or 1) // len(self.grid.cols) + 1
            ):
                self._bands.popitem(last=False)
            band = self._bands[key]
        return band

    def _items(self) -> Iterator[tuple[int, int, int, int]]:
        """(plane, group, tile row, tile col) from the first unfinished plane, row by row."""
        g = self.grid
        for p in range(self.planes_done, self.layout.n_planes):
            for i in range(len(g.rows)):
                for gi in range(len(self.groups)):
                    for j in range(len(g.cols)):
                        yield p, gi, i, j

    def _tile_input(self, p: int, gi: int, i: int, j: int) -> np.ndarray:
        g = self.grid
        x0 = g.cols[j]
        tile = self._band(p, i, gi)[:, :, x0 : x0 + g.tile_w]
        if self.groups[gi].replicate:
            tile = np.repeat(tile, self.r.in_channels, axis=0)
        return tile

    # ------------------------------------------------------------ output
    def _emitter(self, plane: int, g: int) -> Callable[[int, int, np.ndarray], None]:
        mapping = self._mapping(plane, g)
        channels = self.groups[g].channels

        def emit(y0: int, y1: int, band: np.ndarray) -> None:
            values = to_output(mapping.inverse(band), self.result_dtype, self.clip)
            for k, c in enumerate(channels):
                self.layout.write(self.out, plane, c, y0, y1, values[k])

        return emit

    def _copy_alpha(self, plane: int) -> None:
        lay = self.layout
        step = 1024
        for y0 in range(0, lay.height, step):
            y1 = min(lay.height, y0 + step)
            alpha = lay.read(self.image, plane, y0, y1)[3]
            lay.write(self.out, plane, 3, y0, y1, alpha.astype(self.result_dtype, copy=False))

    # ------------------------------------------------------------ run
    def run(self, cancel: CancelToken) -> Generator[tuple[int, int], None, None]:
        g = self.grid
        per_plane = len(self.groups) * g.n_tiles
        total = self.layout.n_planes * per_plane
        done = self.planes_done * per_plane
        yield done, total
        if self.batch_size is None:
            self.batch_size = self.r._auto_batch(g.tile_h * g.tile_w, total)
        probe = self.r.device.type == "cuda" and self.opts.batch_size is None
        stitchers: dict[tuple[int, int], BandStitcher] = {}
        items = self._items()
        pending = list(_take(items, 1 if probe else self.batch_size))
        while pending:
            if _is_cancelled(cancel):
                raise Cancelled(self.planes_done, self.layout.n_planes)
            batch = np.stack([self._tile_input(*item) for item in pending])
            n = len(pending)
            if self.r._compiled and n < (self.batch_size or 1):  # keep one compiled shape
                batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch_size - n, axis=0)])
            if probe:
                result = self.r._probe_batch(self, batch)
                probe = False
            else:
                result = self.r._run_batch(batch, self)
            for (p, gi, i, j), tile in zip(pending, result[:n], strict=True):
                if self.groups[gi].replicate:
                    tile = tile.mean(axis=0, keepdims=True)
                key = (p, gi)
                if key not in stitchers:
                    stitchers[key] = BandStitcher(g, self.groups[gi].out_channels, self._emitter(p, gi))
                stitchers[key].add(i, j, tile)
                if i == len(g.rows) - 1 and j == len(g.cols) - 1:
                    del stitchers[key]
                    if gi == len(self.groups) - 1 and not stitchers:
                        if self.layout.has_alpha:
                            self._copy_alpha(p)
                        self.planes_done = p + 1
            done += n
            yield done, total
            pending = list(_take(items, self.batch_size))


def _take(iterator: Iterator[Any], n: int) -> Iterator[Any]:
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return


def restore(
    image: Any,
    model: str | HINet | None = None,
    task: str | None = None,
    *,
    axes: str | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    tiling: str = "blend",
    progress: ProgressCallback | None = None,
    cancel: CancelToken = None,
    out: Any = None,
    out_dtype: str | None = None,
    normalization: str = "auto",
    percentiles: tuple[float, float] = (1.0, 99.8),
    normalize_per: str = "plane",
    rgb: bool | None = None,
    compile: str = "auto",  # noqa: A002
) -> Any:
    """Restore (denoise, deblur, derain) an image or stack with HINet.

    Args:
        image: numpy array (or zarr/h5py-like array, or dask array) of any
            integer or float dtype; 2-D or more (see ``axes``).
        model: registry name, path to weights, or a loaded ``HINet``; ``None``
            uses the default model of ``task``.
        task: ``"denoise"`` (default when both are None), ``"deblur"`` or ``"derain"``.
        axes: axes string (``"YX"``, ``"YXC"``, ``"CYX"``, ``"ZYX"``, ``"TZYX"``, ``"TCZYX"``...);
            ``None`` guesses like napari (last axis of length 3/4 on >= 3-D data is RGB(A)).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``.
        tile, overlap, batch_size, tiling: tiling options (``tile=None``: model patch size,
            ``overlap=None``: tile // 4, ``batch_size=None``: automatic).
        progress: ``progress(done, total)`` in tiles: once at the start, then after each batch.
        cancel: ``threading.Event`` or callable; when set, :class:`Cancelled` is raised
            before the next batch and nothing is returned.
        out: optional numpy/zarr array of the input's shape to write into (see
            :meth:`Restorer.iter_restore` for what it holds after a cancel).
        out_dtype: ``None`` (input dtype) or ``"float32"``.
        normalization, percentiles, normalize_per: intensity mapping (see :mod:`.intensity`).
        rgb: override the RGB rule for the channel axis.
        compile: ``"auto"``, ``"on"``, ``"off"`` (``torch.compile``; see docs/performance.md).

    Returns:
        An array with the input's shape and dtype (or ``out``). A dask array in
        gives a lazy dask array out (:mod:`napari_hinet.engine.lazy`).
    """
    options = dict(
        axes=axes,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        tiling=tiling,
        out=out,
        out_dtype=out_dtype,
        normalization=normalization,
        percentiles=percentiles,
        normalize_per=normalize_per,
        rgb=rgb,
    )
    if is_dask_array(image):
        from .lazy import restore_dask

        return restore_dask(
            image,
            model=model,
            task=task,
            device=device,
            precision=precision,
            progress=progress,
            cancel=cancel,
            compile=compile,
            **options,
        )
    restorer = Restorer(model, task, device=device, precision=precision, compile=compile)
    return restorer.restore(image, progress=progress, cancel=cancel, **options)
