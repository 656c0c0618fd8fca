"""Reading and writing images for the CLI and scripts: TIFF/OME-TIFF, PNG/JPEG, zarr/OME-Zarr.

The rule of this module: what comes in goes out the same way. :func:`read_image`
returns the pixels together with an :class:`ImageMeta` that remembers how the
file was written (axes, OME-XML, ImageJ tags, resolution, zarr attributes...);
:func:`write_image` writes new pixels of the same shape with that metadata, so a
restored file looks like its input to every reader. The dtype may change (e.g.
``float32`` output): OME-XML and OME-Zarr are updated to match.

Every write is *atomic*: pixels go to a hidden temporary file (or folder, for
zarr) next to the destination, ``.<name>.<random>.napari-hinet-partial``, which
is renamed over the destination only when complete. After a crash or Ctrl-C
the destination is either absent or complete; stale temporaries are removed by
the next write of the same name (:func:`remove_partials`).

Supported suffixes (case-insensitive): ``.tif``, ``.tiff`` (``.ome.tif[f]`` writes
OME-TIFF), ``.png``, ``.jpg``, ``.jpeg`` and ``.zarr`` (``.ome.zarr`` writes OME-Zarr).
A zarr path may hold a single array or an OME-Zarr image group (v0.4 or v0.5);
only the full-resolution level is read, and the output holds that level only.

One module per concern: :mod:`.paths` (suffixes, :func:`file_format`,
:func:`list_images`), :mod:`.atomic` (:func:`atomic_output`, :func:`space_problem`),
:mod:`.image` (:class:`ImageMeta`, :class:`LoadedImage`, the errors), and one per
format family, :mod:`.tiff`, :mod:`.pillow` (PNG/JPEG) and :mod:`.zarr_io`, each
with a reader and a writer that :data:`FORMATS` names. Every public name is
importable from ``napari_hinet.io``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import PARTIAL_SUFFIX, atomic_output, remove_partials, space_problem
from .image import ImageFormatError, ImageMeta, LoadedImage, OutputSpaceError
from .paths import SUPPORTED_SUFFIXES, file_format, is_supported, list_images
from .pillow import read_bmp, read_pillow, write_pillow
from .tiff import read_tiff, write_tiff
from .zarr_io import read_zarr, write_zarr

__all__ = [
    "PARTIAL_SUFFIX",
    "SUPPORTED_SUFFIXES",
    "ImageFormatError",
    "ImageMeta",
    "LoadedImage",
    "OutputSpaceError",
    "atomic_output",
    "check_writable",
    "file_format",
    "is_supported",
    "list_images",
    "read_image",
    "remove_partials",
    "space_problem",
    "write_image",
]

Reader = Callable[[Path, str, bool], LoadedImage]
Writer = Callable[[Path, str, Any, ImageMeta | None], None]

#: The format table: format name (what :func:`file_format` says) -> (reader, writer).
#: ``reader(path, fmt, lazy)`` returns a :class:`LoadedImage`; ``writer(tmp, fmt, data, meta)``
#: writes the temporary that :func:`atomic_output` then moves into place.
FORMATS: dict[str, tuple[Reader, Writer]] = {
    "tiff": (read_tiff, write_tiff),
    "ome-tiff": (read_tiff, write_tiff),
    "png": (read_pillow, write_pillow),
    "jpeg": (read_pillow, write_pillow),
    "zarr": (read_zarr, write_zarr),
    "ome-zarr": (read_zarr, write_zarr),
}


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, *, lazy: bool = False) -> LoadedImage:
    """Read ``path`` into a :class:`LoadedImage`.

    TIFF: the first series at full resolution (axes, OME-XML, ImageJ tags,
    resolution kept). PNG/JPEG: via imageio (``(Y, X)`` or ``(Y, X, C)``). Zarr:
    always lazy (a dask array); an OME-Zarr group gives its first multiscale level.
    With ``lazy=True`` TIFFs are read lazily through tifffile's zarr store too.

    Raises:
        ImageFormatError: unsupported suffix, missing, corrupt or unreadable file.
    """
    path = Path(path)
    fmt = file_format(path)
    if fmt is None:
        raise ImageFormatError(
            f"{path}: unsupported file type; supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.exists():
        raise ImageFormatError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageFormatError(f"{path}: the file is empty (0 bytes); copy it again")
    reader = FORMATS[fmt][0]
    try:
        return reader(path, fmt, lazy)
    except ImageFormatError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, SyntaxError) as exc:
        raise ImageFormatError(f"{path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # third-party readers raise their own error types on corrupt files
        raise ImageFormatError(f"{path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})") from exc


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["data"])


#: Array files read as training data only (``napari-hinet restore`` does not take them):
#: suffix -> reader. ``.npz``: the array named ``data``; ``.npy``: never unpickled.
TRAINING_READERS = {".npy": _read_npy, ".npz": _read_npz, ".bmp": read_bmp}
#: Every suffix :func:`read_array` reads.
ARRAY_SUFFIXES = SUPPORTED_SUFFIXES + tuple(TRAINING_READERS)


def read_array(path: str | os.PathLike) -> np.ndarray:
    """The pixels of one image file as a numpy array: the one reader table of the package.

    Rules, in this order: 1. a suffix of :data:`TRAINING_READERS` (``.npy``,
    ``.npz``, ``.bmp``) uses its reader; 2. everything else is read by
    :func:`read_image` (TIFF/OME-TIFF, PNG/JPEG, zarr) and loaded into memory.
    Training (:func:`napari_hinet.finetune`, the training pool) reads its files here.
    """
    path = Path(path)
    reader = TRAINING_READERS.get(path.suffix.lower())
    if reader is not None:
        return reader(path)
    return np.asarray(read_image(path).data)


# --------------------------------------------------------------------------- writing


def write_image(path: str | os.PathLike, data: Any, meta: ImageMeta | None = None) -> Path:
    """Write ``data`` (numpy or dask) to ``path`` atomically, in the format of the suffix.

    ``meta`` (from :func:`read_image` of the input) carries axes, physical sizes and
    format details; metadata is reused as far as the output format and shape allow.
    Dask data is computed chunk by chunk (zarr) or plane by plane (TIFF), never
    all at once. Returns the path written.

    Raises:
        ImageFormatError: unsupported suffix, or data the format cannot hold (e.g.
            float32 as PNG, 16-bit as JPEG, more than 4 channels as PNG).
    """
    path = Path(path)
    check_writable(path, data.dtype, data.shape)
    fmt = file_format(path)
    if meta is not None and tuple(meta.shape) != tuple(data.shape):
        meta = ImageMeta(format=meta.format, axes=None, shape=tuple(data.shape), dtype=str(data.dtype))
    with atomic_output(path) as tmp:
        FORMATS[fmt][1](tmp, fmt, data, meta)
    return path


def check_writable(path: str | os.PathLike, dtype: Any, shape: tuple[int, ...]) -> None:
    """Raise :class:`ImageFormatError` if the format of ``path`` cannot hold pixels of ``dtype`` and ``shape``.

    Rules, in this order: the suffix must be supported; PNG holds uint8 or uint16,
    JPEG uint8 only; both hold one 2-D image, gray or with 1-4 (PNG) or 1 or 3
    (JPEG) channels last. TIFF and zarr hold any numeric array. Used by
    :func:`write_image` and, before anything is computed, by the CLI.
    """
    path = Path(path)
    fmt = file_format(path)
    if fmt is None:
        raise ImageFormatError(f"{path}: unsupported output type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if fmt not in ("png", "jpeg"):
        return
    dtype = np.dtype(dtype)
    ok = ("uint8",) if fmt == "jpeg" else ("uint8", "uint16")
    if dtype.name not in ok:
        raise ImageFormatError(
            f"{path}: {fmt.upper()} cannot store {dtype.name} pixels (it holds {' or '.join(ok)}); "
            "write a .tif or .zarr instead"
        )
    shape = tuple(shape)
    if not (
        len(shape) == 2 or (len(shape) == 3 and shape[-1] in ((1, 3) if fmt == "jpeg" else (1, 2, 3, 4)))
    ):
        raise ImageFormatError(
            f"{path}: {fmt.upper()} holds one 2-D gray or colour image, not shape {shape}; write a .tif instead"
        )
