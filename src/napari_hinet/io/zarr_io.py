"""Zarr arrays and OME-Zarr images (v0.4, v0.5): read lazily with dask; write chunk by chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..dask_support import is_dask_array
from .image import ImageFormatError, ImageMeta, LoadedImage


def _ome_zarr_multiscales(attrs: dict) -> tuple[list | None, str | None]:
    """(multiscales list, OME-Zarr version) from group attributes of v0.4 or v0.5."""
    if "ome" in attrs and isinstance(attrs["ome"], dict) and "multiscales" in attrs["ome"]:
        return attrs["ome"]["multiscales"], str(attrs["ome"].get("version", "0.5"))
    if "multiscales" in attrs:
        ms = attrs["multiscales"]
        version = str(ms[0].get("version", "0.4")) if ms else "0.4"
        return ms, version
    return None, None


def read_zarr(path: Path, fmt: str, lazy: bool) -> LoadedImage:
    """Open a zarr array or the first level of an OME-Zarr image as a dask array (always lazy)."""
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


def write_zarr(tmp: Path, fmt: str, data: Any, meta: ImageMeta | None) -> None:
    """Write ``data`` (numpy, or dask chunk by chunk) to the folder ``tmp`` as zarr or OME-Zarr."""
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
