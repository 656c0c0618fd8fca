"""What :mod:`napari_hinet.io` returns and raises: :class:`ImageMeta`, :class:`LoadedImage`, the two errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ImageFormatError(ValueError):
    """The file cannot be read, or the data cannot be written in the requested format."""


class OutputSpaceError(OSError):
    """An output did not fit: disk full, quota or file size limit. Nothing partial is left behind."""


@dataclass
class ImageMeta:
    """How an image was stored, so that it can be written back the same way.

    Attributes:
        format: ``"tiff"``, ``"ome-tiff"``, ``"imagej-tiff"``, ``"png"``, ``"jpeg"``,
            ``"zarr"`` or ``"ome-zarr"``.
        axes: one letter per array dimension from ``T Z C Y X`` (``C`` also for RGB
            samples), or ``None`` when the file does not say (then the engine guesses).
        shape: the array shape the metadata describes.
        dtype: the stored dtype name (``"uint16"``...).
        scale: physical pixel size per axis letter (e.g. ``{"X": 0.5, "Y": 0.5}``).
        units: physical unit per axis letter (e.g. ``{"X": "µm"}``).
        extra: format-specific details (OME-XML, ImageJ tags, TIFF resolution,
            photometric, compression, zarr attributes, chunks, PNG dpi...).
    """

    format: str
    axes: str | None
    shape: tuple[int, ...]
    dtype: str
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedImage:
    """Pixels and metadata of one input. ``data`` is a numpy array, or a dask array when lazy."""

    path: Path
    data: Any
    meta: ImageMeta
