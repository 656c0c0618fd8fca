"""RestoreSettings: the one settings object shared by the widget, the CLI and the API.

A :class:`RestoreSettings` holds every option of :func:`napari_hinet.restore`
that is a plain value (no callbacks, no arrays). It is the one place where
these options are declared, defaulted and validated: :func:`napari_hinet.restore`,
:class:`~napari_hinet.Restorer`, :func:`~napari_hinet.engine.lazy.restore_dask`,
the CLI, the napari commands (:mod:`napari_hinet.layers`) and the widgets all
build one and pass it on::

    settings = RestoreSettings(task="denoise", tile=256)
    result = napari_hinet.restore(image, settings=settings)
    result = napari_hinet.restore(image, task="denoise", tile=256)  # the same

The choice lists (:data:`TASKS`, :data:`TILINGS`, :data:`PRECISIONS`, ...)
are defined here once; the engine, the registry, the CLI and the widgets
import them from here.

This module imports neither torch nor numpy, so it is cheap to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: What a model restores (``"unknown"``, for a user file without metadata, is not a choice).
TASKS = ("denoise", "deblur", "derain")
TILINGS = ("blend", "official", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NORMALIZATIONS = ("auto", "fixed", "percentile")
NORMALIZE_PER = ("plane", "stack")
OUT_DTYPES = (None, "float32")
COMPILE_MODES = ("auto", "on", "off")
#: Who runs the network: ``"auto"`` = OpenVINO for large CPU runs, else torch (docs/engine.md "Backends").
BACKENDS = ("auto", "torch", "openvino")
#: Instance-norm statistics: ``"auto"`` = the model's ``metadata["statistics"]``, else global.
STATS = ("auto", "global", "local")

#: The settings that choose and load the model (a :class:`~napari_hinet.Restorer` is built from
#: them); every other field is a per-run option of :meth:`~napari_hinet.Restorer.restore`.
MODEL_FIELDS = ("model", "task", "device", "precision", "compile", "backend", "stats")


@dataclass
class RestoreSettings:
    """All plain-value options of a restoration run (defaults = the engine defaults).

    Attributes:
        model: registry name or path of the weights; ``None`` = the default
            model of ``task``.
        task: ``"denoise"``, ``"deblur"`` or ``"derain"`` (used when ``model`` is None).
        axes: axes of the input, e.g. ``"YX"``, ``"YXC"``, ``"TZYX"``; ``None``
            guesses them (see :func:`napari_hinet.engine.axes.guess_axes`).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).
        tile: tile edge in pixels; ``None`` = the model's training patch size
            (256 for the official models). Rounded up to a multiple of 16.
        overlap: overlap between neighbouring tiles in pixels (``"blend"`` only);
            ``None`` = :func:`default_overlap` of the tile (``tile // 4`` up to
            64-pixel tiles, then ``tile // 8``, at least 16).
        batch_size: tiles per forward pass; ``None`` = sized by the model's work
            per pixel on CPU/MPS, from free memory on CUDA (:mod:`napari_hinet.engine.batching`).
        tiling: ``"blend"`` (overlapping tiles, smooth raised-cosine blending),
            ``"official"`` (the HINet paper's test-time grids, uniform averaging)
            or ``"none"`` (whole planes).
        normalization: ``"auto"``, ``"fixed"`` (dtype range; floats as [0, 1])
            or ``"percentile"`` (robust, ``percentiles`` mapped to [0, 1]).
        percentiles: low and high percentile (0-100) for ``"percentile"``.
        normalize_per: ``"plane"`` (each 2-D plane on its own) or ``"stack"``
            (one low/high pair per channel group for the whole stack).
        out_dtype: ``None`` (same dtype as the input) or ``"float32"``.
        rgb: ``None`` applies the RGB rule (a last axis of length 3 or 4 is
            colour); ``True``/``False`` force the channel axis to be colour or
            independent channels.
        compile: ``"on"`` runs the model through ``torch.compile``; ``"auto"``
            (currently the same as ``"off"``) and ``"off"`` run eagerly (see
            docs/engine.md, "compile").
        backend: ``"auto"`` (OpenVINO on the CPU for runs large enough to win
            back its start, about a megapixel for the bundled models; torch
            otherwise and on GPUs), ``"torch"`` or ``"openvino"`` (CPU only;
            falls back to torch with a warning when missing or failing). See
            docs/engine.md, "Backends".
        stats: half instance normalisation statistics: ``"global"`` (over the
            whole tile, as trained), ``"local"`` (TLC: over a training-patch
            window around each pixel, with large tiles) or ``"auto"`` (the
            model's ``metadata["statistics"]``, else ``"global"``). See
            docs/engine.md, "Local statistics".
        ensemble: ``True`` restores each tile in several orientations (8 rotations
            and flips for denoising and deblurring, 4 flips for deraining) and
            averages the results: about +0.1 to +0.3 dB for 4-8x the time
            (:mod:`napari_hinet.engine.ensemble`; docs/engine.md, "Self-ensemble").
            Default ``False``.
    """

    model: str | None = None
    task: str | None = None
    axes: str | None = None
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    tiling: str = "blend"
    normalization: str = "auto"
    percentiles: tuple[float, float] = (1.0, 99.8)
    normalize_per: str = "plane"
    out_dtype: str | None = None
    rgb: bool | None = None
    compile: str = "auto"
    backend: str = "auto"
    stats: str = "auto"
    ensemble: bool = False

    def __post_init__(self) -> None:
        self.percentiles = tuple(float(p) for p in self.percentiles)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field and its allowed values."""
        if self.task is not None:
            _choice("task", self.task, TASKS)
        _choice("tiling", self.tiling, TILINGS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("normalize_per", self.normalize_per, NORMALIZE_PER)
        _choice("out_dtype", self.out_dtype, OUT_DTYPES)
        _choice("compile", self.compile, COMPILE_MODES)
        _choice("backend", self.backend, BACKENDS)
        _choice("stats", self.stats, STATS)
        _choice("rgb", self.rgb, (None, True, False))
        if not isinstance(self.ensemble, bool):
            raise ValueError(f"ensemble must be True or False, got {self.ensemble!r}.")
        if self.axes is not None and not isinstance(self.axes, str):
            raise ValueError(f"axes must be a string such as 'ZYX' or None, got {self.axes!r}.")
        for name in ("tile", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")
        if self.overlap is not None and (not isinstance(self.overlap, int) or self.overlap < 0):
            raise ValueError(f"overlap must be a non-negative integer or None, got {self.overlap!r}.")
        if self.tile is not None and self.tile > MAX_TILE:
            raise ValueError(
                f"tile must be at most {MAX_TILE} pixels, got {self.tile}: one tile's network activations "
                "would not fit in memory. Use a smaller tile (the default is the model's patch size)."
            )
        if self.tile is not None and self.overlap is not None:
            check_overlap(self.tile, self.overlap)
        low, high = self.percentiles if len(self.percentiles) == 2 else (None, None)
        if low is None or not (0.0 <= low < high <= 100.0):
            raise ValueError(
                f"percentiles must be two numbers 0 <= low < high <= 100, got {self.percentiles!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        data = asdict(self)
        data["percentiles"] = list(self.percentiles)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestoreSettings:
        """Settings from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        _check_known(data, ValueError)
        return cls(**data)

    @classmethod
    def build(cls, settings: RestoreSettings | None = None, **options: Any) -> RestoreSettings:
        """``settings`` (or the defaults) with ``options`` replacing fields, validated.

        This is how every entry point turns keyword options into settings;
        an unknown option raises ``TypeError`` naming it and the known ones.
        """
        _check_known(options, TypeError)
        if settings is None:
            return cls(**options)
        return replace(settings, **options) if options else settings

    def replace(self, **options: Any) -> RestoreSettings:
        """A validated copy with ``options`` changed (unknown names raise ``TypeError``)."""
        return self.build(self, **options)

    def restore_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`napari_hinet.restore` (every field)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def model_kwargs(self) -> dict[str, Any]:
        """``model``, ``task``, ``device``, ``precision``, ``compile``, ``backend``, ``stats``: what builds a Restorer."""
        return {name: getattr(self, name) for name in MODEL_FIELDS}

    def run_kwargs(self) -> dict[str, Any]:
        """The per-run options (every field but :data:`MODEL_FIELDS`), for ``Restorer.restore``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in MODEL_FIELDS}


def _check_known(options: dict[str, Any], error: type[Exception]) -> None:
    known = {f.name for f in fields(RestoreSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise error(f"Unknown restore setting(s) {unknown}; known settings: {sorted(known)}.")


#: Largest tile edge in pixels: activations of one 4096 x 4096 tile of a full-width HINet already
#: take tens of GB; larger edges are refused up front instead of exhausting memory mid-run.
MAX_TILE = 4096


def check_overlap(tile: int, overlap: int) -> None:
    """Raise ``ValueError`` unless ``0 <= overlap <= tile // 2``.

    Tiles advance by ``tile - overlap`` pixels, so the bound keeps a plane's tile
    count within about 4 times that of a grid without overlap (``overlap=63`` with
    ``tile=64`` would otherwise plan 201,601 tiles for a 512 x 512 image instead of 121).
    """
    if not 0 <= overlap <= tile // 2:
        raise ValueError(
            f"overlap must be between 0 and half the tile ({tile // 2} for tile={tile}), got {overlap}: "
            "tiles advance by tile - overlap pixels, so a larger overlap multiplies the number of tiles. "
            f"The default for this tile is {default_overlap(tile)}."
        )


def default_overlap(tile: int) -> int:
    """The default overlap (pixels) of blended tiles of edge ``tile``.

    1. tiles up to 64 pixels overlap by a quarter: ``tile // 4`` (16 for 64);
    2. larger tiles overlap by an eighth, at least 16 pixels: ``tile // 8``.

    The seam a tile border leaves depends on the network's reach in pixels, not
    on the tile, so large tiles need a smaller *share* of overlap. Measured with
    the 128-pixel bundled denoisers on 448-pixel test crops, overlap 16 gave
    -0.015 to +0.006 dB against 32 (``benchmarks/bench_overlap.py``), and
    processes ``(128 / 112)**2 = 1.31`` times the image's pixels instead of 1.78.
    """
    return max(tile // 8, min(tile // 4, 16))


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not valid; choose one of {shown}.")
