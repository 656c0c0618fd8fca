"""restore(), Restorer and get_restorer: the in-memory engine's public API.

A run goes like this (see docs/engine.md for the rules in full):

1. the options become one :class:`~napari_hinet.settings.RestoreSettings`
   (validated there), the dtype is checked, the axes are guessed or checked;
2. :func:`.plan.plan_run` plans the run: channel groups, tile grid,
   normalisation, output dtype and clip;
3. :func:`.runner.run_tiles` (the one tile loop) reads tiles, batches them
   through the :class:`~.predictor.Predictor` and hands them to a
   :class:`BandSink`, which merges them band by band (:class:`.tiling.BandStitcher`)
   and writes each band into the output as soon as it is final;
4. a tile too large for the device memory restarts the unfinished planes
   with smaller tiles (:meth:`.plan.RunPlan.with_smaller_tiles`).

The host holds the input, the output and a few bands of tiles; the device
holds the model and one batch of tiles. A dask array goes to
:func:`.lazy.restore_dask` instead (same settings, lazy result).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from ..dask_support import is_dask_array
from ..model import HINet
from ..settings import RestoreSettings
from .axes import Layout
from .batching import BatchPolicy, TileTooLarge
from .cache import get_predictor
from .intensity import check_dtype, check_finite
from .mappings import plane_mappings, stack_sample
from .plan import RunPlan, plan_run
from .predictor import Predictor
from .runner import Cancelled, CancelToken, TileSource, copy_alpha, run_tiles, write_rows
from .tiling import BandStitcher

__all__ = ["BandSink", "Cancelled", "Restorer", "get_restorer", "restore"]

ProgressCallback = Callable[[int, int], Any]

#: What a :class:`Restorer` shows of its :class:`~.predictor.Predictor` (read through, not copied):
#: ``device``, ``dtype``, ``precision``, ``metadata``, ``info``, ``config``, ``precision_check``,
#: ``net``, ``compile_status``, ``in_channels``, ``size_multiple``, ``patch_size``,
#: ``backend``, ``stats``, ``statistics``, ``describe()`` and ``describe_device()``.
PREDICTOR_FACTS = frozenset(
    {
        "device",
        "dtype",
        "precision",
        "metadata",
        "info",
        "config",
        "precision_check",
        "net",
        "compile_status",
        "in_channels",
        "size_multiple",
        "patch_size",
        "describe",
        "describe_device",
        "backend",
        "stats",
        "statistics",
    }
)


def _as_array(image: Any) -> Any:
    """numpy/zarr/h5py-like arrays pass through; torch tensors and sequences become numpy."""
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    if hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "__getitem__"):
        return image
    return np.asarray(image)


class BandSink:
    """Sink of the in-memory run: stitches each (plane, group) band by band into ``out``.

    Attributes:
        planes_done: planes completely written (after a cancel or error, the
            finished planes of ``out``; a restart with smaller tiles begins here).
    """

    def __init__(self, plan: RunPlan, source: TileSource, out: Any) -> None:
        self.plan = plan
        self.source = source
        self.out = out
        self.planes_done = 0
        self._stitchers: dict[tuple[int, int], BandStitcher] = {}

    def add(self, plane: int, group: int, i: int, j: int, tile: np.ndarray) -> None:
        key = (plane, group)
        stitcher = self._stitchers.get(key)
        if stitcher is None:
            mapping = self.source.mappings(plane)[group]
            plan, layout, out = self.plan, self.plan.layout, self.out

            def emit(y0: int, y1: int, band: np.ndarray) -> None:
                write_rows(plan, layout, out, plane, group, mapping, y0, y1, band)

            stitcher = self._stitchers[key] = BandStitcher(plan.grid, plan.groups[group].out_channels, emit)
        stitcher.add(i, j, tile)
        if i == len(self.plan.grid.rows) - 1 and j == len(self.plan.grid.cols) - 1:
            del self._stitchers[key]

    def plane_done(self, plane: int) -> None:
        lay = self.plan.layout
        if lay.has_alpha:
            dtype = np.dtype(self.plan.result_dtype)
            copy_alpha(lay, self.source.image, lay, self.out, plane, (0, lay.height), (0, lay.width), dtype)
        self.planes_done = plane + 1


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
            never; ``"auto"`` follows :data:`.predictor.COMPILE_MIN_FORWARDS` (currently: off).
        backend: ``"auto"`` (OpenVINO for large CPU runs, else torch), ``"torch"``,
            ``"openvino"`` (CPU); ``Restorer.backend`` says what ran last.
        stats: ``"auto"``, ``"global"``, ``"local"`` (TLC local statistics; see docs/engine.md).

    Attributes:
        predictor: the :class:`~.predictor.Predictor` that runs the network;
            its ``device``, ``dtype`` (compute dtype; ``torch.float32`` = no
            autocast), ``precision``, ``metadata`` (dict), ``info`` (typed),
            ``config``, ``precision_check``, ``net``, ``in_channels``,
            ``size_multiple``, ``patch_size`` and ``describe()`` are read
            through the Restorer too (:data:`PREDICTOR_FACTS`).
    """

    def __init__(self, model: str | HINet | None = None, task: str | None = None, **options: Any) -> None:
        self.predictor = Predictor(model, task, **options)  # device, precision, compile, backend, stats

    @classmethod
    def from_predictor(cls, predictor: Predictor) -> Restorer:
        """A Restorer running an existing (e.g. cached) predictor."""
        restorer = cls.__new__(cls)
        restorer.predictor = predictor
        return restorer

    def __getattr__(self, name: str) -> Any:
        """The predictor's facts, read through: see :data:`PREDICTOR_FACTS`."""
        if name in PREDICTOR_FACTS:
            return getattr(self.predictor, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------ public
    def plan(
        self, shape: tuple[int, ...], settings: RestoreSettings | None = None, **options: Any
    ) -> dict[str, Any]:
        """What a run on data of ``shape`` would do, without reading any data.

        ``settings``/``options`` as for :meth:`restore` (only ``axes``, ``rgb``,
        ``tile``, ``overlap``, ``tiling`` and ``ensemble`` matter). Returns a dict with
        ``axes``, ``rgb``, ``tiling``, ``tile`` and ``overlap`` (resolved; ``None``
        for ``"none"``), ``grid`` (tiles per plane as (rows, cols)), ``planes``,
        ``groups`` (network runs per plane), ``tiles`` (the ``total`` that
        ``progress`` will report) and ``ensemble`` (orientations each tile runs
        in: 1, or 8 or 4 with ``ensemble=True``).
        """
        settings = RestoreSettings.build(settings, **options).replace(normalization="fixed", out_dtype=None)
        layout = Layout.create(tuple(shape), settings.axes, settings.rgb)
        return plan_run(self.info, layout, np.dtype(np.float32), settings).summary()

    def restore(
        self,
        image: Any,
        settings: RestoreSettings | None = None,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken = None,
        out: Any = None,
        **options: Any,
    ) -> Any:
        """Restore ``image``; same shape, and dtype unless ``out_dtype``/``out`` say otherwise.

        Arguments as for :meth:`iter_restore`. ``progress(done, total)``
        is called once with ``done=0``, then after every batch of tiles.
        Raises :class:`Cancelled` when ``cancel`` fires (checked before every batch).
        """
        steps = self.iter_restore(image, settings, cancel=cancel, out=out, **options)
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
        settings: RestoreSettings | None = None,
        *,
        out: Any = None,
        cancel: CancelToken = None,
        **options: Any,
    ) -> Generator[tuple[int, int], None, Any]:
        """Generator form of :meth:`restore`: yields ``(done, total)`` tiles, returns the result.

        Use it from a napari ``thread_worker``: closing the generator stops the
        run within one batch. The result is the generator's return value
        (``StopIteration.value``).

        Args:
            image: numpy array, zarr array or anything with ``shape``, ``dtype``
                and numpy-style slicing (read one band of tiles at a time); (H, W) >= (1, 1).
            settings: the run options (:class:`~napari_hinet.settings.RestoreSettings`;
                its ``model``, ``task``, ``device``, ``precision``, ``compile``, ``backend``
                and ``stats`` are the Restorer's and are not used here).
            out: array of the input's shape to write into (numpy or zarr); its
                dtype is the output dtype. Bands are written as they finish:
                after :class:`Cancelled` or an error, ``out`` holds the finished
                planes (``Cancelled.planes_done``), part of the current plane,
                and is untouched elsewhere.
            cancel: ``threading.Event`` or callable returning True to stop.
            options: fields of ``settings`` to override (``axes``, ``rgb``, ``tile``,
                ``overlap``, ``batch_size``, ``tiling``, ``normalization``,
                ``percentiles``, ``normalize_per``, ``out_dtype``, ``ensemble``).
        """
        settings = RestoreSettings.build(settings, **options)
        image = _as_array(image)
        dtype = check_dtype(image.dtype)
        layout = Layout.create(tuple(image.shape), settings.axes, settings.rgb)
        if isinstance(image, np.ndarray):
            check_finite(image)
        stack: list[np.ndarray] = []

        def sample() -> np.ndarray:
            stack.append(stack_sample(image, layout))
            return stack[0]

        plan = plan_run(self.info, layout, dtype, settings, out=out, sample=sample)
        if out is None:
            out = np.empty(layout.shape, plan.result_dtype)
        mappings = plane_mappings(plan, image, layout, stack[0] if stack else None)
        planes_done = 0
        while True:
            source = TileSource(plan, image, layout, mappings, check_bands=not isinstance(image, np.ndarray))
            sink = BandSink(plan, source, out)
            sink.planes_done = planes_done
            g = plan.grid
            policy = BatchPolicy(self.predictor, plan.batch_size, g.tile_h * g.tile_w, plan.total_tiles)
            self.predictor.start_backend(plan.total_tiles * g.tile_h * g.tile_w)  # before done=0 is reported
            try:
                yield from run_tiles(plan, policy, source, sink, cancel=cancel, first_plane=planes_done)
                return out
            except TileTooLarge:
                planes_done = sink.planes_done
                plan = plan.with_smaller_tiles(self.device)
                warnings.warn(
                    f"Out of memory with one tile on {self.device}; retrying with {plan.tile}x{plan.tile} "
                    f"tiles from plane {planes_done}.",
                    stacklevel=2,
                )


def get_restorer(model: Any = None, task: str | None = None, *args: Any, **options: Any) -> Restorer:
    """A Restorer on this process's cached model (:mod:`.cache`): loaded once per key.

    The widgets, the CLI and the dask path share this cache. ``model`` is a
    registry name, a path, ``None`` (the default of ``task``) or a ``HINet``;
    the other arguments (``device``, ``precision``, ``compile``, ``backend``,
    ``stats``, positional in that order or by name) are those of :func:`.cache.get_predictor`.
    """
    return Restorer.from_predictor(get_predictor(model, task, *args, **options))


def restore(
    image: Any,
    model: str | HINet | None = None,
    task: str | None = None,
    *,
    settings: RestoreSettings | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken = None,
    out: Any = None,
    **options: Any,
) -> Any:
    """Restore (denoise, deblur, derain) an image or stack with HINet.

    Args:
        image: numpy array (or zarr/h5py-like array, or dask array) of any
            integer or float dtype; 2-D or more (see ``axes``).
        model: registry name, path to weights, or a loaded ``HINet``; ``None``
            uses the default model of ``task``.
        task: ``"denoise"`` (default when both are None), ``"deblur"`` or ``"derain"``.
        settings: a :class:`~napari_hinet.settings.RestoreSettings`; ``options`` override
            its fields. Its ``model``/``task`` are used when the arguments are None.
        progress: ``progress(done, total)`` in tiles: once at the start, then after each batch.
        cancel: ``threading.Event`` or callable; when set, :class:`Cancelled` is raised
            before the next batch and nothing is returned.
        out: optional numpy/zarr array of the input's shape to write into (see
            :meth:`Restorer.iter_restore` for what it holds after a cancel).
        options: any field of :class:`~napari_hinet.settings.RestoreSettings` (the one
            declaration of the options, their defaults and allowed values): ``axes``,
            ``device``, ``precision``, ``tile``, ``overlap``, ``batch_size``, ``tiling``,
            ``normalization``, ``percentiles``, ``normalize_per``, ``out_dtype``, ``rgb``,
            ``compile``, ``backend``, ``stats``, ``ensemble``. An unknown name raises ``TypeError``.

    Returns:
        An array with the input's shape and dtype (or ``out``). A dask array in
        gives a lazy dask array out (:mod:`napari_hinet.engine.lazy`).
    """
    settings = RestoreSettings.build(settings, **options)
    model = settings.model if model is None else model
    task = settings.task if task is None else task
    if is_dask_array(image):
        from .lazy import restore_dask

        return restore_dask(image, model, task, settings=settings, progress=progress, cancel=cancel, out=out)
    kwargs = settings.model_kwargs()
    del kwargs["model"], kwargs["task"]
    restorer = Restorer(model, task, **kwargs)
    return restorer.restore(image, settings, progress=progress, cancel=cancel, out=out)
