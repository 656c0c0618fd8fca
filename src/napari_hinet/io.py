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
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dask_support import is_dask_array

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

SUPPORTED_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr")
PARTIAL_SUFFIX = ".napari-hinet-partial"

# tifffile axis letters -> our vocabulary (T, Z, C, Y, X); S = samples (RGB) is a channel axis.
_TIFF_AXES = {"T": "T", "Z": "Z", "C": "C", "S": "C", "Y": "Y", "X": "X"}
# numpy dtype -> OME Pixels@Type
_OME_TYPES = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}


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


# --------------------------------------------------------------------------- paths


def _lower_name(path: Path) -> str:
    return path.name.lower()


def file_format(path: str | os.PathLike) -> str | None:
    """The format written for ``path``, judged from its name; ``None`` when unsupported.

    ``x.ome.tif`` -> ``"ome-tiff"``, ``x.tif`` -> ``"tiff"``, ``x.png`` -> ``"png"``,
    ``x.jpg`` -> ``"jpeg"``, ``x.ome.zarr`` -> ``"ome-zarr"``, ``x.zarr`` -> ``"zarr"``.
    """
    name = _lower_name(Path(path)).rstrip("/")
    if name.endswith((".ome.tif", ".ome.tiff")):
        return "ome-tiff"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".png"):
        return "png"
    if name.endswith((".jpg", ".jpeg")):
        return "jpeg"
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    return None


def is_supported(path: str | os.PathLike) -> bool:
    """True when ``path`` has a suffix this module reads (see :data:`SUPPORTED_SUFFIXES`)."""
    return file_format(path) is not None


def list_images(
    folder: str | os.PathLike, recursive: bool = False, *, follow_symlinks: bool = False
) -> list[Path]:
    """Supported images in ``folder``, sorted by name; hidden names (``.x``) are skipped.

    Rules, in this order: 1. zarr folders count as one image and are not descended
    into; 2. with ``recursive=True`` sub-folders are searched too, but a linked
    sub-folder (symlink) only with ``follow_symlinks=True``, and then never one whose
    real folder is already being searched (no loops) or lies outside ``folder``'s real
    folder (the walk never leaves the input tree); 3. linked image files are taken
    (reading a link cannot loop). A folder that cannot be listed raises ``OSError``.
    """
    root = Path(folder)
    real_root = Path(os.path.realpath(root))
    return _walk(root, recursive, follow_symlinks, real_root, {real_root})


def _walk(folder: Path, recursive: bool, follow: bool, real_root: Path, seen: set[Path]) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if is_supported(entry) and (entry.is_file() or file_format(entry) in ("zarr", "ome-zarr")):
            found.append(entry)
        elif recursive and entry.is_dir():
            real = Path(os.path.realpath(entry))
            if entry.is_symlink() and not (follow and real_root in real.parents):
                continue
            if real in seen:
                continue
            found.extend(_walk(entry, recursive, follow, real_root, seen | {real}))
    return found


# --------------------------------------------------------------------------- atomic writes


def remove_partials(path: str | os.PathLike) -> list[Path]:
    """Delete temporaries left next to ``path`` by an interrupted write; return what was removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for entry in path.parent.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith(PARTIAL_SUFFIX):
            _remove(entry)
            removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it to ``path``.

    The one atomic write of the package: image outputs, saved models
    (:func:`napari_hinet.save_model`), training checkpoints and caches, and the
    widgets' saved settings all go through it.

    The temporary is in the same folder (so the final rename stays on one file
    system) and is deleted if the block raises, including ``KeyboardInterrupt``.
    Files are replaced with :func:`os.replace` (atomic). A folder (zarr) replaces
    an existing folder in two renames: the old one is moved aside first, so
    readers may briefly see no output, but never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_partials(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    try:
        yield tmp
        if tmp.is_dir():
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old{PARTIAL_SUFFIX}"
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                _remove(old)
        else:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if path.is_dir():
                raise ImageFormatError(f"cannot replace the folder {path} with a file; remove it first")
            os.replace(tmp, path)
            _fsync_folder(path.parent)  # make the rename itself durable
    except BaseException as exc:
        _remove(tmp)
        reason = space_problem(exc)
        if reason:
            free = shutil.disk_usage(path.parent).free / 1e6
            raise OutputSpaceError(
                f"{path}: not written, {reason} ({free:.1f} MB free in {path.parent}). The partial file was "
                "removed; free some space or choose another output folder, then run again "
                "(--skip-existing keeps the outputs already written)."
            ) from None
        raise


#: errno values that mean "no room for the output": disk full, quota exceeded, file size limit
_SPACE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
_SPACE_ERRNOS[errno.EFBIG] = "the file size limit was reached"


def space_problem(exc: BaseException | None) -> str:
    """Why ``exc`` (or an exception it was raised from) means the output did not fit; "" otherwise.

    numpy's ``tofile`` (used by tifffile) loses the errno of a short write and says
    "N requested and M written"; that counts as no space too.
    """
    for _ in range(5):
        if exc is None:
            return ""
        if isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS:
            return _SPACE_ERRNOS[exc.errno]
        if isinstance(exc, OSError) and re.search(r"\d+ requested and \d+ written", str(exc)):
            return "the disk is full or a size limit was reached (short write)"
        exc = exc.__cause__ or exc.__context__
    return ""


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
    try:
        if fmt in ("tiff", "ome-tiff"):
            return _read_tiff(path, lazy)
        if fmt in ("png", "jpeg"):
            return _read_pillow(path, fmt)
        return _read_zarr(path)
    except ImageFormatError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, SyntaxError) as exc:
        raise ImageFormatError(f"{path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # third-party readers raise their own error types on corrupt files
        raise ImageFormatError(f"{path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})") from exc


def _normalise_tiff_axes(axes: str) -> str | None:
    """tifffile axes -> ``TZCYX`` letters; unknown stack letters become T if T is free."""
    out = []
    for letter in axes:
        mapped = _TIFF_AXES.get(letter)
        if mapped is None:
            mapped = "T"  # I (image sequence), Q (unknown), E, R, ...: planes processed one by one
        out.append(mapped)
    result = "".join(out)
    return result if len(set(result)) == len(result) else None


def _read_tiff(path: Path, lazy: bool) -> LoadedImage:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageFormatError(f"{path}: the TIFF holds no image")
        series = tif.series[0]
        page = series.keyframe
        extra: dict[str, Any] = {
            "series_axes": series.axes,
            "n_series": len(tif.series),
            "photometric": int(page.photometric),
            "planarconfig": int(page.planarconfig),
            "compressed": int(page.compression) != 1,
        }
        if 282 in page.tags and 283 in page.tags:
            extra["resolution"] = tuple(float(r) for r in page.resolution)
            extra["resolutionunit"] = int(page.resolutionunit)
        scale: dict[str, float] = {}
        units: dict[str, str] = {}
        if tif.is_ome and tif.ome_metadata:
            fmt = "ome-tiff"
            extra["ome_xml"] = tif.ome_metadata
            scale, units = _ome_xml_scale(tif.ome_metadata)
        elif tif.is_imagej:
            fmt = "imagej-tiff"
            ij = dict(tif.imagej_metadata or {})
            extra["imagej"] = {k: ij[k] for k in ("spacing", "unit", "finterval", "fps", "mode") if k in ij}
            if "resolution" in extra and all(extra["resolution"]):
                scale = {"X": 1.0 / extra["resolution"][0], "Y": 1.0 / extra["resolution"][1]}
            if "spacing" in ij:
                scale["Z"] = float(ij["spacing"])
            if "unit" in ij:
                units = {a: str(ij["unit"]) for a in ("X", "Y", "Z")}
        else:
            fmt = "tiff"
            scale, units = _resolution_scale(extra)
        if lazy:
            import dask.array as da
            import zarr

            # the store opens its own file handle, so it outlives this ``with`` block
            data = da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r"))
        else:
            data = series.asarray()
    meta = ImageMeta(
        format=fmt,
        axes=_normalise_tiff_axes(series.axes),
        shape=tuple(data.shape),
        dtype=str(data.dtype),
        scale=scale,
        units=units,
        extra=extra,
    )
    return LoadedImage(path=path, data=data, meta=meta)


#: micrometres per TIFF resolution unit: 2 = inch, 3 = centimetre (1 = none: no physical size)
_UM_PER_RESOLUTION_UNIT = {2: 25400.0, 3: 10000.0}


def _resolution_scale(extra: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Physical pixel size (µm) of a plain TIFF from its resolution tags; empty without a unit."""
    per_unit = _UM_PER_RESOLUTION_UNIT.get(extra.get("resolutionunit", 1))
    res = extra.get("resolution")
    if per_unit is None or not res or not all(r > 0 for r in res):
        return {}, {}
    return {"X": per_unit / res[0], "Y": per_unit / res[1]}, {"X": "µm", "Y": "µm"}


def _ome_xml_scale(xml: str) -> tuple[dict[str, float], dict[str, str]]:
    """Physical pixel sizes and units from the first ``<Pixels>`` element of OME-XML."""
    match = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if not match:
        return scale, units
    tag = match.group(0)
    for axis in "XYZ":
        size = re.search(rf'\bPhysicalSize{axis}="([^"]+)"', tag)
        if size:
            try:
                scale[axis] = float(size.group(1))
            except ValueError:
                continue
            unit = re.search(rf'\bPhysicalSize{axis}Unit="([^"]+)"', tag)
            units[axis] = unit.group(1) if unit else "µm"
    step = re.search(r'\bTimeIncrement="([^"]+)"', tag)
    if step:
        try:
            scale["T"] = float(step.group(1))
            unit = re.search(r'\bTimeIncrementUnit="([^"]+)"', tag)
            units["T"] = unit.group(1) if unit else "s"
        except ValueError:
            pass
    return scale, units


def _read_pillow(path: Path, fmt: str) -> LoadedImage:
    import imageio.v3 as iio

    data = np.asarray(iio.imread(path, plugin="pillow"))
    info = iio.immeta(path, plugin="pillow")
    extra: dict[str, Any] = {"mode": info.get("mode")}
    if "dpi" in info:
        extra["dpi"] = tuple(float(v) for v in info["dpi"])
    if data.ndim == 2:
        axes = "YX"
    elif data.ndim == 3 and data.shape[-1] in (1, 2, 3, 4):
        axes = "YXC"
    else:
        raise ImageFormatError(f"{path}: unexpected image shape {data.shape} (animated or multi-page?)")
    meta = ImageMeta(format=fmt, axes=axes, shape=data.shape, dtype=str(data.dtype), extra=extra)
    return LoadedImage(path=path, data=data, meta=meta)


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["data"])


def _read_bmp(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path, plugin="pillow"))


#: Array files read as training data only (``napari-hinet restore`` does not take them):
#: suffix -> reader. ``.npz``: the array named ``data``; ``.npy``: never unpickled.
TRAINING_READERS = {".npy": _read_npy, ".npz": _read_npz, ".bmp": _read_bmp}
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


def _ome_zarr_multiscales(attrs: dict) -> tuple[list | None, str | None]:
    """(multiscales list, OME-Zarr version) from group attributes of v0.4 or v0.5."""
    if "ome" in attrs and isinstance(attrs["ome"], dict) and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"], str(attrs["ome"].get("version", "0.5"))
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        version = str(ms[0].get("version", "0.4")) if ms else "0.4"
        return ms, version
    return None, None


def _read_zarr(path: Path) -> LoadedImage:
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    extra: dict[str, Any] = {"zarr_format": node.metadata.zarr_format}
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if isinstance(node, zarr.Array):
        array = node
        attrs = dict(node.attrs)
        axes = attrs.get("axes") if isinstance(attrs.get("axes"), str) else None
        fmt = "zarr"
        extra["attrs"] = attrs
    else:
        attrs = dict(node.attrs)
        multiscales, version = _ome_zarr_multiscales(attrs)
        if not multiscales:
            arrays = sorted(name for name, _ in node.arrays())
            raise ImageFormatError(
                f"{path}: a zarr group without OME-Zarr 'multiscales' metadata; open one of its "
                f"arrays instead ({', '.join(arrays) or 'it has none'})"
            )
        image = multiscales[0]
        level = image["datasets"][0]
        array = node[level["path"]]
        fmt = "ome-zarr"
        extra.update(group_attrs=attrs, ome_version=version, dataset_path=level["path"])
        names = [a["name"] if isinstance(a, dict) else str(a) for a in image.get("axes", [])]
        axes = "".join(n.upper() for n in names) if names else None
        if axes and (set(axes) - set("TZCYX") or len(set(axes)) != len(axes)):
            axes = None
        for transform in level.get("coordinateTransformations", []):
            if transform.get("type") == "scale" and names:
                for name, value in zip(names, transform["scale"], strict=False):
                    scale[name.upper()] = float(value)
        for a in image.get("axes", []):
            if isinstance(a, dict) and "unit" in a:
                units[a["name"].upper()] = a["unit"]
    extra["chunks"] = tuple(array.chunks)
    data = da.from_zarr(array)
    meta = ImageMeta(
        format=fmt,
        axes=axes,
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        scale=scale,
        units=units,
        extra=extra,
    )
    return LoadedImage(path=path, data=data, meta=meta)


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
        if fmt in ("tiff", "ome-tiff"):
            _write_tiff(tmp, fmt, data, meta)
        elif fmt in ("png", "jpeg"):
            _write_pillow(tmp, fmt, np.asarray(data), meta)
        else:
            _write_zarr(tmp, fmt, data, meta)
    return path


def _ome_xml_for(xml: str, dtype: np.dtype) -> str | None:
    """The input OME-XML adapted to ``dtype`` and to a single file; None if not possible."""
    ome_type = _OME_TYPES.get(np.dtype(dtype).name)
    if ome_type is None or len(re.findall(r"<(?:\w+:)?Image\b", xml)) != 1:
        return None

    def fix_pixels(match: re.Match) -> str:
        tag = match.group(0)
        tag = re.sub(r'\bType="[^"]*"', f'Type="{ome_type}"', tag)
        tag = re.sub(r'\bSignificantBits="[^"]*"', f'SignificantBits="{np.dtype(dtype).itemsize * 8}"', tag)
        tag = re.sub(r'\bBigEndian="[^"]*"', 'BigEndian="false"', tag)
        return tag

    xml = re.sub(r"<(?:\w+:)?Pixels\b[^>]*>", fix_pixels, xml, count=1)
    # UUID children of TiffData name the file the planes live in: drop them (one file, same planes)
    xml = re.sub(r"<(?:\w+:)?UUID\b[^>]*/>", "", xml)
    xml = re.sub(r"<(?:\w+:)?UUID\b[^>]*>[^<]*</(?:\w+:)?UUID>", "", xml)
    return xml


def _tiff_pages(data: Any, page_ndim: int) -> Iterator[np.ndarray]:
    """Pages of ``data`` in C order; a dask array is computed one leading-axis chunk at a time."""
    lead = data.shape[: data.ndim - page_ndim]
    if not is_dask_array(data):
        yield from np.asarray(data).reshape((-1, *data.shape[data.ndim - page_ndim :]))
        return
    if not lead:
        yield np.asarray(data.compute())
        return
    step = data.chunks[0][0] if data.chunks[0] else 1
    for start in range(0, lead[0], step):
        block = np.asarray(data[start : start + step].compute())
        yield from block.reshape((-1, *data.shape[data.ndim - page_ndim :]))


def _write_tiff(tmp: Path, fmt: str, data: Any, meta: ImageMeta | None) -> None:
    import tifffile

    dtype = np.dtype(data.dtype)
    extra = meta.extra if meta is not None else {}
    kwargs: dict[str, Any] = {}
    series_axes = extra.get("series_axes")
    photometric = extra.get("photometric")
    if photometric is not None:
        kwargs["photometric"] = tifffile.PHOTOMETRIC(photometric)
        if kwargs["photometric"] == tifffile.PHOTOMETRIC.RGB:  # planar config only describes samples
            kwargs["planarconfig"] = tifffile.PLANARCONFIG(extra.get("planarconfig", 1))
    elif meta is not None and meta.axes and meta.axes.endswith("C") and data.shape[-1] in (3, 4):
        kwargs["photometric"] = "rgb"
    else:
        kwargs["photometric"] = "minisblack"
    if "resolution" in extra:
        kwargs["resolution"] = extra["resolution"]
        kwargs["resolutionunit"] = tifffile.RESUNIT(extra["resolutionunit"])
    if extra.get("compressed"):
        kwargs["compression"] = "zlib"

    wants_ome = fmt == "ome-tiff" or (meta is not None and meta.format == "ome-tiff")
    ome_xml = _ome_xml_for(extra["ome_xml"], dtype) if wants_ome and "ome_xml" in extra else None
    if ome_xml is not None:
        kwargs["description"] = ome_xml.encode("utf-8")
        kwargs["metadata"] = None
    elif wants_ome:
        kwargs["ome"] = True
        kwargs["metadata"] = _ome_metadata(meta, data)
    elif meta is not None and meta.format == "imagej-tiff" and dtype.name in ("uint8", "uint16", "float32"):
        kwargs["imagej"] = True
        kwargs["metadata"] = {"axes": series_axes, **extra.get("imagej", {})}
    else:
        kwargs["metadata"] = {"axes": series_axes} if series_axes else {}

    samples = kwargs.get("photometric") in ("rgb", tifffile.PHOTOMETRIC.RGB)
    contig = kwargs.get("planarconfig", tifffile.PLANARCONFIG.CONTIG) == tifffile.PLANARCONFIG.CONTIG
    page_ndim = 3 if samples else 2
    if samples and not contig:
        page_ndim = 3  # planes stored as (S, Y, X)
    if is_dask_array(data):
        tifffile.imwrite(
            tmp,
            _tiff_pages(data, page_ndim),
            shape=data.shape,
            dtype=dtype,
            bigtiff=_needs_bigtiff(data),
            **kwargs,
        )
    else:
        tifffile.imwrite(tmp, np.asarray(data), bigtiff=_needs_bigtiff(data), **kwargs)


def _needs_bigtiff(data: Any) -> bool:
    return int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize > 2**31


def _ome_metadata(meta: ImageMeta | None, data: Any) -> dict[str, Any]:
    """tifffile ``metadata=`` for a fresh OME-TIFF: axes and physical sizes."""
    md: dict[str, Any] = {}
    if meta is None or not meta.axes:
        return md
    axes = meta.axes
    if axes.endswith("C") and data.shape[-1] in (3, 4):
        axes = axes[:-1] + "S"
    md["axes"] = axes
    for axis in "XYZ":
        if axis in meta.scale:
            md[f"PhysicalSize{axis}"] = meta.scale[axis]
            md[f"PhysicalSize{axis}Unit"] = _ome_unit(meta.units.get(axis, "µm"))
    return md


def _ome_unit(unit: str) -> str:
    return {"micron": "µm", "micrometer": "µm", "um": "µm", "nanometer": "nm", "millimeter": "mm"}.get(
        unit, unit
    )


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


def _write_pillow(tmp: Path, fmt: str, data: np.ndarray, meta: ImageMeta | None) -> None:
    import imageio.v3 as iio

    kwargs: dict[str, Any] = {}
    if meta is not None and "dpi" in meta.extra:
        kwargs["dpi"] = meta.extra["dpi"]
    if fmt == "jpeg":
        kwargs["quality"] = 95
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    # encoded in memory, written by us: a failed write (disk full) is raised here, not later by a writer's __del__
    encoded = iio.imwrite("<bytes>", data, extension=".png" if fmt == "png" else ".jpg", **kwargs)
    with open(tmp, "wb") as fh:
        fh.write(encoded)


def _default_chunks(shape: tuple[int, ...], axes: str | None) -> tuple[int, ...]:
    """Planes of at most 1024 x 1024 pixels; a trailing/leading channel axis is kept whole."""
    chunks = []
    for i, n in enumerate(shape):
        letter = axes[i] if axes and len(axes) == len(shape) else None
        if i >= len(shape) - 2 and letter in (None, "Y", "X"):
            chunks.append(min(n, 1024))
        elif letter == "C":
            chunks.append(n)
        else:
            chunks.append(1)
    if not axes and len(shape) >= 3 and shape[-1] in (3, 4):  # RGB(A) guessed: keep samples whole
        chunks[-1] = shape[-1]
        chunks[-3] = min(shape[-3], 1024)
        chunks[-2] = min(shape[-2], 1024)
    return tuple(chunks)


def _ome_zarr_attrs(meta: ImageMeta | None, shape: tuple[int, ...], name: str) -> tuple[dict, int]:
    """(group attributes, zarr format) for a one-level OME-Zarr image."""
    axes = meta.axes if meta is not None and meta.axes and len(meta.axes) == len(shape) else None
    if meta is not None and meta.format == "ome-zarr" and axes:
        attrs = _copy_jsonable(meta.extra["group_attrs"])
        version = meta.extra.get("ome_version", "0.4")
        multiscales, _ = _ome_zarr_multiscales(attrs)
        image = multiscales[0]
        image["datasets"] = [dict(image["datasets"][0], path="0")]
        zarr_format = int(meta.extra.get("zarr_format", 2 if version.startswith("0.4") else 3))
        return attrs, zarr_format
    if axes is None:
        axes = "TZCYX"[-len(shape) :] if len(shape) <= 5 else None
        if axes is None:
            raise ImageFormatError(f"OME-Zarr needs axes; cannot name {len(shape)} dimensions")
    kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
    axes_md = []
    for letter in axes:
        entry: dict[str, Any] = {"name": letter.lower(), "type": kinds[letter]}
        if meta is not None and letter in meta.units and letter in meta.scale:
            entry["unit"] = _ngff_unit(meta.units[letter])
        axes_md.append(entry)
    scale = [float(meta.scale.get(letter, 1.0)) if meta is not None else 1.0 for letter in axes]
    multiscale = {
        "version": "0.4",
        "name": name,
        "axes": axes_md,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }
    return {"multiscales": [multiscale]}, 2


def _ngff_unit(unit: str) -> str:
    return {
        "µm": "micrometer",
        "um": "micrometer",
        "micron": "micrometer",
        "nm": "nanometer",
        "mm": "millimeter",
        "s": "second",
        "ms": "millisecond",
    }.get(unit, unit)


def _copy_jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _write_zarr(tmp: Path, fmt: str, data: Any, meta: ImageMeta | None) -> None:
    import zarr

    shape = tuple(data.shape)
    axes = meta.axes if meta is not None else None
    chunks = meta.extra.get("chunks") if meta is not None and meta.extra.get("chunks") else None
    if chunks is None or len(chunks) != len(shape):
        chunks = _default_chunks(shape, axes)
    wants_ome = fmt == "ome-zarr" or (meta is not None and meta.format == "ome-zarr")
    if wants_ome:
        attrs, zarr_format = _ome_zarr_attrs(meta, shape, Path(tmp).name.split(".")[1])
        group = zarr.open_group(str(tmp), mode="w", zarr_format=zarr_format)
        array = group.create_array("0", shape=shape, chunks=chunks, dtype=data.dtype)
        group.attrs.update(attrs)
    else:
        zarr_format = int(meta.extra.get("zarr_format", 3)) if meta is not None else 3
        array = zarr.create_array(
            str(tmp), shape=shape, chunks=chunks, dtype=data.dtype, zarr_format=zarr_format
        )
        attrs = dict(meta.extra.get("attrs", {})) if meta is not None else {}
        if axes and "axes" not in attrs:
            attrs["axes"] = axes
        if attrs:
            array.attrs.update(_copy_jsonable(attrs))
    if is_dask_array(data):
        import dask.array as da

        da.store(data.rechunk(chunks) if _misaligned(data, chunks) else data, array, lock=False)
    else:
        array[...] = np.asarray(data)


def _misaligned(data: Any, chunks: tuple[int, ...]) -> bool:
    """True when dask chunks would make two tasks write into the same zarr chunk."""
    for dim_chunks, size in zip(data.chunks, chunks, strict=True):
        if any(c % size for c in dim_chunks[:-1]):
            return True
    return False
