"""TIFF, OME-TIFF and ImageJ TIFF (tifffile): read with axes, OME-XML, ImageJ tags and resolution; write them back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..dask_support import is_dask_array
from .image import ImageFormatError, ImageMeta, LoadedImage

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


def read_tiff(path: Path, fmt: str, lazy: bool) -> LoadedImage:
    """Read the first series of a TIFF at full resolution (dask with ``lazy``); ``fmt`` becomes the kind found."""
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


def write_tiff(tmp: Path, fmt: str, data: Any, meta: ImageMeta | None) -> None:
    """Write ``data`` (numpy, or dask plane by plane) to ``tmp`` as TIFF with ``meta``'s tags."""
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
