"""Restore napari image layers: the napari commands and the layer plumbing the widgets share.

The commands :func:`denoise`, :func:`deblur` and :func:`derain` are listed in
the plugin manifest, so a script or napari's console can run them on a layer
without the widget::

    from napari_hinet.layers import denoise
    data, kwargs, layer_type = denoise(viewer.layers["nuclei (noisy)"])
    viewer.add_layer(napari.layers.Layer.create(data, kwargs, layer_type))

or through npe2: ``npe2.PluginManager.instance().commands.execute(
"napari-hinet.denoise", args=(layer,))``. Each returns one napari layer-data
tuple ``(data, kwargs, "image")`` whose kwargs carry the input's scale,
translate, rotation, units, axis labels and display settings, and
``metadata["napari_hinet"]`` with the provenance of the result.

The rest of the module is GUI-free plumbing used by the commands and by the
Denoise/Deblur/Derain widgets, in the order a run uses it:

1. check the layer and take its level-0 array and axes (:func:`check_layer`,
   :func:`source_array`, :func:`layer_axes`);
2. choose the part to restore (:class:`Region`: :func:`whole_region`,
   :func:`current_plane_region`, :func:`field_of_view_region`) and where the
   result goes (:func:`allocate_output`: memory, or a zarr store for large lazy data);
3. run the engine over it with progress (:func:`iter_restore_region`; the
   options are one :class:`~napari_hinet.settings.RestoreSettings`, the model
   comes from the shared cache, :func:`napari_hinet.engine.get_restorer`);
4. build the output layer: :func:`run_record` (the options as resolved),
   :func:`provenance` and :func:`output_layer_kwargs`.

It imports neither Qt nor torch at module level.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metadata import ModelMetadata
from .settings import RestoreSettings

if TYPE_CHECKING:  # napari is only needed for type hints here
    import napari.layers

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Axis letters given to the leading (plane) axes of a layer, innermost last.
_PLANE_LETTERS = "ABDEFGHIJKLMNOPQRSTUVWZ"

#: Integer dtypes taken as intensities; wider integers (int32, int64, uint32...) are what
#: label images use, so they are refused with a hint instead of being "restored".
_USABLE_INTEGER_DTYPES = (np.uint8, np.uint16, np.int8, np.int16)


# ---------------------------------------------------------------- layer data
def source_array(layer: napari.layers.Image) -> Any:
    """The layer's full-resolution array: ``layer.data``, or level 0 of a multiscale layer.

    Never converted to numpy: a dask or zarr array stays lazy and is read tile by tile.
    """
    return layer.data[0] if layer.multiscale else layer.data


def layer_axes(layer: napari.layers.Image) -> str:
    """Engine axes string for the layer's data: e.g. ``"YX"``, ``"YXC"`` (RGB), ``"DYX"``.

    The last two layer dimensions are the image plane (Y, X); for an RGB layer
    the colour axis comes after them (C). Every other dimension (Z, T, channels
    shown as a slider...) is a plane axis, processed one 2-D plane at a time.
    """
    n_leading = layer.ndim - 2
    if n_leading > len(_PLANE_LETTERS):
        raise ValueError(f"Layer {layer.name!r} has too many dimensions ({layer.ndim}).")
    leading = _PLANE_LETTERS[len(_PLANE_LETTERS) - n_leading :] if n_leading else ""
    return leading + ("YXC" if layer.rgb else "YX")


def check_layer(layer: Any) -> None:
    """Raise ``ValueError`` with a fix if the layer cannot be restored (wrong type, dtype or size)."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        kind = type(layer).__name__
        raise ValueError(
            f"Layer {getattr(layer, 'name', layer)!r} is a {kind} layer; HINet restores image layers only. "
            "Pick an image layer."
        )
    dtype = np.dtype(source_array(layer).dtype)
    if dtype == np.bool_:
        raise ValueError(
            f"Layer {layer.name!r} holds a boolean mask, not intensities; HINet restores intensity images."
        )
    if np.issubdtype(dtype, np.integer) and dtype not in [np.dtype(d) for d in _USABLE_INTEGER_DTYPES]:
        raise ValueError(
            f"Layer {layer.name!r} has dtype {dtype}, which looks like a label image, not intensities. "
            "HINet restores 8/16-bit integer and floating-point images; convert the layer "
            "(e.g. layer.data.astype('float32')) if it really holds intensities."
        )
    if layer.rgb and source_array(layer).shape[-1] not in (3, 4):
        raise ValueError(
            f"Layer {layer.name!r} is RGB with {source_array(layer).shape[-1]} channels; need 3 or 4."
        )


# ---------------------------------------------------------------- regions
@dataclass(frozen=True)
class Region:
    """The part of a layer to restore, in level-0 data coordinates.

    Attributes:
        planes: for each leading (non-YX) axis, the ``slice`` of planes to restore.
        rows, cols: the Y and X extent.
        scope: ``"image"`` (a 2-D layer), ``"stack"``, ``"plane"`` or ``"field of view"``
            (goes into the provenance).
    """

    planes: tuple[slice, ...]
    rows: slice
    cols: slice
    scope: str = "stack"

    def index(self) -> tuple[slice, ...]:
        """Index into the layer's array (a trailing RGB axis is taken whole)."""
        return (*self.planes, self.rows, self.cols)

    def offset(self) -> np.ndarray:
        """Data coordinates (one per layer dimension) of the region's first pixel."""
        return np.array([s.start or 0 for s in self.index()], dtype=float)

    def shape(self, layer_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(len(range(*s.indices(n))) for s, n in zip(self.index(), layer_shape, strict=False))


def whole_region(layer: napari.layers.Image) -> Region:
    """Every plane and pixel of the layer."""
    n_leading = layer.ndim - 2
    return Region((slice(None),) * n_leading, slice(None), slice(None), "stack" if n_leading else "image")


def _plane_index(layer: napari.layers.Image, world_point: Sequence[float]) -> list[int]:
    """Data index of the plane shown at ``world_point`` (viewer.dims.point), per leading axis."""
    point = np.asarray(world_point, dtype=float)[-layer.ndim :]
    data_point = np.asarray(layer.world_to_data(point), dtype=float)
    shape = source_array(layer).shape
    index = []
    for axis in range(layer.ndim - 2):
        i = int(np.floor(data_point[axis] + 0.5))
        index.append(int(np.clip(i, 0, shape[axis] - 1)))
    return index


def current_plane_region(layer: napari.layers.Image, world_point: Sequence[float]) -> Region:
    """The plane of ``layer`` shown at ``world_point`` (``viewer.dims.point``), whole in Y and X."""
    planes = tuple(slice(i, i + 1) for i in _plane_index(layer, world_point))
    return Region(planes, slice(None), slice(None), "plane" if planes else "image")


def field_of_view_region(layer: napari.layers.Image, world_point: Sequence[float], margin: int = 0) -> Region:
    """The visible part of the current plane (from ``layer.corner_pixels``), in level-0 pixels.

    Falls back to the whole plane when the layer has not been drawn yet.
    """
    planes = tuple(slice(i, i + 1) for i in _plane_index(layer, world_point))
    corners = np.asarray(layer.corner_pixels, dtype=float)[:, -2:]
    start, stop = corners[0], corners[1] + 1  # corner_pixels are inclusive pixel indices
    if layer.multiscale:  # corner_pixels are in pixels of the level being shown
        factors = np.asarray(layer.downsample_factors[layer.data_level], dtype=float)[-2:]
        start, stop = start * factors, stop * factors
    shape = source_array(layer).shape
    height, width = shape[layer.ndim - 2], shape[layer.ndim - 1]
    y0, x0 = max(0, int(start[0]) - margin), max(0, int(start[1]) - margin)
    y1 = min(height, int(np.ceil(stop[0])) + margin)
    x1 = min(width, int(np.ceil(stop[1])) + margin)
    if y1 - y0 < 2 or x1 - x0 < 2:  # not drawn yet (corner_pixels all zero): whole plane
        y0, x0, y1, x1 = 0, 0, height, width
    return Region(planes, slice(y0, y1), slice(x0, x1), "field of view")


# ---------------------------------------------------------------- running
@dataclass(frozen=True)
class RegionProgress:
    """One progress step of :func:`iter_restore_region`.

    ``plane``/``planes``: index (0-based) and number of planes; ``done``/``total``:
    tile batches done in the current plane and their number.
    """

    plane: int
    planes: int
    done: int
    total: int

    @property
    def fraction(self) -> float:
        inner = self.done / self.total if self.total else 1.0
        return (self.plane + inner) / max(self.planes, 1)


def iter_restore_region(
    restorer: Any,
    array: Any,
    axes: str,
    region: Region,
    settings: RestoreSettings | None = None,
    out: Any = None,
) -> Generator[RegionProgress, None, Any]:
    """Restore ``array[region]``, yielding progress after every batch of tiles.

    Args:
        restorer: a :class:`napari_hinet.engine.Restorer` (model loaded once).
        array: the layer's level-0 array (numpy, dask, zarr...). It is sliced
            lazily and the engine reads one band of tiles at a time, so a dask
            or zarr stack is never loaded whole.
        axes: the engine axes of ``array`` (see :func:`layer_axes`).
        region: which planes and pixels.
        settings: the run options (tile, overlap, tiling, normalization,
            out_dtype...); its ``axes`` is replaced by ``axes``.
        out: where to write the result (see :func:`allocate_output`); ``None``
            lets the engine allocate a numpy array.

    Yields :class:`RegionProgress` (plane and tile-batch counts); returns the
    restored region shaped like ``array[region.index()]``: a numpy array, or
    ``out`` when one was given (e.g. a zarr array on disk).
    Closing the generator (what a cancelled napari worker does) stops the run
    after the current batch.
    """
    view = array[region.index()]
    n_planes = int(np.prod(view.shape[: len(region.planes)], dtype=np.int64)) if region.planes else 1
    steps = restorer.iter_restore(view, settings, axes=axes, out=out)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return stop.value if out is not None else np.asarray(stop.value)
        per_plane = max(1, total // max(n_planes, 1))
        plane = min(n_planes - 1, done // per_plane)
        yield RegionProgress(plane, n_planes, done - plane * per_plane, per_plane)


#: Environment variable: outputs of lazy (dask/zarr) inputs bigger than this many bytes
#: are written to a zarr store on disk instead of memory.
ZARR_OUTPUT_BYTES_ENV = "NAPARI_HINET_ZARR_OUTPUT_BYTES"
DEFAULT_ZARR_OUTPUT_BYTES = 2 * 2**30
#: Environment variable: folder of those zarr stores (default: the user cache folder).
OUTPUT_DIR_ENV = "NAPARI_HINET_OUTPUT_DIR"


def output_store_dir() -> Path:
    """Folder of on-disk outputs: ``$NAPARI_HINET_OUTPUT_DIR`` or ``<user cache>/napari-hinet/outputs``."""
    env = os.environ.get(OUTPUT_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-hinet", appauthor=False)) / "outputs"


def allocate_output(array: Any, axes: str, region: Region, out_dtype: str | None) -> tuple[Any, str | None]:
    """Where to write the restored region: ``(None, None)`` for memory, or ``(zarr array, path)``.

    A numpy input (already in memory) gets a numpy output. A lazy input (dask,
    zarr...) whose output would exceed ``$NAPARI_HINET_ZARR_OUTPUT_BYTES``
    (default 2 GiB) gets a zarr store in :func:`output_store_dir`, chunked one
    plane by up to 1024 x 1024 pixels, so a stack larger than memory can be
    restored; the layer then shows it lazily. The store is not deleted
    automatically (its path is in the provenance, ``output_store``).
    """
    shape = region.shape(array.shape) + tuple(array.shape[len(region.index()) :])
    dtype = np.dtype(np.float32) if out_dtype == "float32" else np.dtype(array.dtype)
    limit = int(os.environ.get(ZARR_OUTPUT_BYTES_ENV, DEFAULT_ZARR_OUTPUT_BYTES))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if isinstance(array, np.ndarray) or nbytes <= limit:
        return None, None
    import uuid

    import zarr

    folder = output_store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.zarr"
    y = axes.index("Y")
    chunks = [1] * len(shape)
    chunks[y], chunks[y + 1] = min(shape[y], 1024), min(shape[y + 1], 1024)
    if axes.endswith("C"):
        chunks[-1] = shape[-1]
    store = zarr.open_array(str(path), mode="w", shape=shape, chunks=tuple(chunks), dtype=dtype)
    return store, str(path)


def as_layer_data(result: Any) -> Any:
    """A numpy result as is; a zarr output as a lazy dask array for napari."""
    if isinstance(result, np.ndarray):
        return result
    import dask.array as da

    return da.from_zarr(result)


# ---------------------------------------------------------------- output layer
def output_name(input_name: str, task: str, preview: bool = False) -> str:
    """``"<input name> (HINet <task>)"``; previews get ``" preview"`` appended inside the brackets."""
    return f"{input_name} (HINet {task}{' preview' if preview else ''})"


def _package_version() -> str:
    from napari_hinet import __version__

    return __version__


def provenance(
    *,
    model_metadata: dict[str, Any] | ModelMetadata,
    task: str,
    source_layer: str,
    region: Region,
    options: dict[str, Any],
    device: str,
    precision: str,
    seconds: float,
    pixels: int,
    output_store: str | None = None,
) -> dict[str, Any]:
    """The ``metadata["napari_hinet"]`` dict of an output layer: what made it, how, where and when.

    ``options``: the run as resolved (:func:`run_record`); ``model_metadata``: the
    model's metadata (``Restorer.metadata`` or ``Restorer.info``).
    """
    info = (
        model_metadata
        if isinstance(model_metadata, ModelMetadata)
        else ModelMetadata.from_dict(model_metadata)
    )
    return {
        "output_store": output_store,
        "task": task,
        "model": info.name,
        "model_kind": info.registry_kind,
        "weights_sha256": info.sha256,
        "model_file": info.file,
        "tiling": options.get("tiling", "blend"),
        "tile": options.get("tile"),
        "overlap": options.get("overlap"),
        "normalization": options.get("normalization", "auto"),
        "out_dtype": options.get("out_dtype"),
        "device": device,
        "precision": precision,
        "backend": options.get("backend"),
        "stats": options.get("stats"),
        "ensemble": options.get("ensemble", 1),
        "source_layer": source_layer,
        "scope": region.scope,
        "region_offset": [int(v) for v in region.offset()],
        "seconds": round(float(seconds), 3),
        "megapixels_per_second": round(pixels / 1e6 / seconds, 4) if seconds > 0 else None,
        "package": "napari-hinet",
        "version": _package_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def output_layer_kwargs(
    layer: napari.layers.Image, region: Region, name: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Layer kwargs that place the restored region exactly over the input and display it alike.

    Copies scale, rotation, shear, affine, units, axis labels, RGB flag,
    colormap, contrast limits, gamma, blending and opacity; the translate is
    shifted by the region's offset so a single plane or a crop lands where it
    came from. ``metadata`` becomes ``metadata["napari_hinet"]``.
    """
    from napari.utils.transforms import Affine

    linear = Affine(scale=layer.scale, rotate=layer.rotate, shear=layer.shear).linear_matrix
    translate = np.asarray(layer.translate, dtype=float) + linear @ region.offset()
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(layer.scale),
        "translate": tuple(translate),
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": np.asarray(layer.affine.affine_matrix),
        "rgb": bool(layer.rgb),
        "contrast_limits": [float(v) for v in layer.contrast_limits],
        "gamma": float(layer.gamma),
        "blending": str(layer.blending),
        "opacity": float(layer.opacity),
        "metadata": {"napari_hinet": metadata},
    }
    if not layer.rgb:
        kwargs["colormap"] = layer.colormap
    if getattr(layer, "units", None) is not None:
        kwargs["units"] = tuple(layer.units)
    if getattr(layer, "axis_labels", None) is not None:
        kwargs["axis_labels"] = tuple(layer.axis_labels)
    return kwargs


def run_record(restorer: Any, settings: RestoreSettings, shape: Sequence[int], axes: str) -> dict[str, Any]:
    """The options a run on data of ``shape`` really uses, for :func:`provenance`.

    ``tiling``, ``tile`` and ``overlap`` as the engine resolves them (``None``
    where the tiling has none; :meth:`napari_hinet.engine.Restorer.plan`),
    ``normalization`` and ``out_dtype`` as set, ``backend`` (``"openvino"`` or
    ``"torch"``), ``stats`` (``"global"`` or ``"local"``) as run, and ``ensemble``
    (orientations averaged per tile: 1, 4 or 8).
    """
    plan = restorer.plan(tuple(shape), settings, axes=axes)
    return {
        "tiling": plan["tiling"],
        "tile": plan["tile"],
        "overlap": plan["overlap"],
        "normalization": settings.normalization,
        "out_dtype": settings.out_dtype,
        "backend": restorer.backend,
        "stats": restorer.stats,
        "ensemble": plan["ensemble"],
    }


# ---------------------------------------------------------------- commands
def restore_layer(layer: napari.layers.Image, settings: RestoreSettings) -> LayerDataTuple:
    """Restore a whole layer synchronously and return its output layer-data tuple.

    ``settings.task`` names the task (output name and provenance); the model
    comes from the per-process cache (:func:`napari_hinet.engine.get_restorer`).
    """
    from napari_hinet.engine import get_restorer

    check_layer(layer)
    restorer = get_restorer(**settings.model_kwargs())
    region = whole_region(layer)
    array = source_array(layer)
    axes = layer_axes(layer)
    out, store = allocate_output(array, axes, region, settings.out_dtype)
    start = time.perf_counter()
    gen = iter_restore_region(restorer, array, axes, region, settings, out)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            data = as_layer_data(stop.value)
            break
    seconds = time.perf_counter() - start
    task = settings.task or "denoise"
    meta = provenance(
        model_metadata=restorer.info,
        task=task,
        source_layer=layer.name,
        region=region,
        options=run_record(restorer, settings, data.shape, axes),
        device=restorer.describe_device(),
        precision=restorer.precision,
        seconds=seconds,
        pixels=int(np.prod(data.shape[: layer.ndim])),
        output_store=store,
    )
    return data, output_layer_kwargs(layer, region, output_name(layer.name, task), meta), "image"


def _command(task: str, summary: str) -> Callable[..., LayerDataTuple]:
    """The napari command of ``task``: its arguments become the run's :class:`RestoreSettings`."""

    def command(
        image: napari.layers.Image,
        model: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        tiling: str = "blend",
        out_dtype: str | None = "float32",
        ensemble: bool = False,
    ) -> LayerDataTuple:
        options = {
            "model": model,
            "device": device,
            "precision": precision,
            "tiling": tiling,
            "ensemble": ensemble,
        }
        return restore_layer(
            image, RestoreSettings(task=task, tile=tile, overlap=overlap, out_dtype=out_dtype, **options)
        )

    command.__name__ = command.__qualname__ = task
    command.__doc__ = f"""{summary}; returns ``(data, kwargs, "image")`` for a new layer.

    Args:
        image: the napari image layer (2-D, RGB, or a stack; dask/multiscale read tile by tile).
        model: registry name or weights path; ``None`` = the task's default model.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        tile, overlap: tile edge and overlap in pixels; ``None`` = automatic.
        tiling: ``"blend"``, ``"official"`` or ``"none"``.
        out_dtype: ``"float32"`` (default) or ``None`` for the input's dtype.
        ensemble: ``True`` averages each tile over 8 orientations (4 for deraining); 4-8x the time.

    The input layer is not modified. The kwargs carry the input's geometry and
    display settings and ``metadata["napari_hinet"]`` (provenance).
    """
    return command


denoise = _command("denoise", "Denoise an image layer with HINet")
deblur = _command("deblur", "Deblur an image layer with HINet")
derain = _command("derain", "Remove rain streaks from an image layer with HINet")
