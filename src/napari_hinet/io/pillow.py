"""PNG and JPEG (imageio's pillow plugin): one 2-D gray or colour image, dpi kept; BMP for training data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .image import ImageFormatError, ImageMeta, LoadedImage


def read_pillow(path: Path, fmt: str, lazy: bool) -> LoadedImage:
    """Read a PNG or JPEG into memory (``lazy`` does not apply)."""
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


def read_bmp(path: Path) -> np.ndarray:
    """The pixels of a BMP file (training data only)."""
    import imageio.v3 as iio

    return np.asarray(iio.imread(path, plugin="pillow"))


def write_pillow(tmp: Path, fmt: str, data: Any, meta: ImageMeta | None) -> None:
    """Write ``data`` (loaded into memory) to ``tmp`` as PNG or JPEG (quality 95), with ``meta``'s dpi."""
    import imageio.v3 as iio

    data = np.asarray(data)

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
