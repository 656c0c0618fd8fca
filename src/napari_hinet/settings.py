"""RestoreSettings: the one settings object shared by the widget, the CLI and the API.

A :class:`RestoreSettings` holds every option of :func:`napari_hinet.restore`
that is a plain value (no callbacks, no arrays). The widget persists it, the
CLI reads it from a JSON/YAML config, and scripts pass it on::

    settings = RestoreSettings(task="denoise", tile=256)
    result = napari_hinet.restore(image, **settings.restore_kwargs())

This module imports neither torch nor numpy, so it is cheap to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

TILINGS = ("blend", "official", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NORMALIZATIONS = ("auto", "fixed", "percentile")
NORMALIZE_PER = ("plane", "stack")
OUT_DTYPES = (None, "float32")
COMPILE_MODES = ("auto", "on", "off")


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
            ``None`` = ``tile // 4``.
        batch_size: tiles per forward pass; ``None`` = 1 on CPU/MPS, sized from
            free memory on CUDA.
        tiling: ``"blend"`` (overlapping tiles, smooth raised-cosine blending),
            ``"official"`` (the HINet paper's test-time grids, uniform averaging)
            or ``"none"`` (whole planes).
        normalization: ``"auto"``, ``"fixed"`` (dtype range; floats as [0, 1])
            or ``"percentile"`` (robust, ``percentiles`` mapped to [0, 1]).
        percentiles: low and high percentile (0-100) for ``"percentile"``.
        normalize_per: ``"plane"`` (each 2-D plane on its own) or ``"stack"``
            (one low/high pair per channel group for the whole stack).
        out_dtype: ``None`` (same dtype as the input) or ``"float32"``.
        compile: ``"on"`` runs the model through ``torch.compile``; ``"auto"``
            (currently the same as ``"off"``) and ``"off"`` run eagerly (see
            docs/engine.md, "compile").
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
    compile: str = "auto"

    def __post_init__(self) -> None:
        self.percentiles = tuple(float(p) for p in self.percentiles)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field and its allowed values."""
        _choice("tiling", self.tiling, TILINGS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("normalize_per", self.normalize_per, NORMALIZE_PER)
        _choice("out_dtype", self.out_dtype, OUT_DTYPES)
        _choice("compile", self.compile, COMPILE_MODES)
        for name in ("tile", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")
        if self.overlap is not None and (not isinstance(self.overlap, int) or self.overlap < 0):
            raise ValueError(f"overlap must be a non-negative integer or None, got {self.overlap!r}.")
        if self.tile is not None and self.overlap is not None and self.overlap >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than tile ({self.tile}).")
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown restore setting(s) {unknown}; known settings: {sorted(known)}.")
        return cls(**data)

    def restore_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`napari_hinet.restore` / :class:`~napari_hinet.Restorer`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not valid; choose one of {shown}.")
