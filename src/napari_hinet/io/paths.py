"""Which files are images: supported suffixes, the format of a name, the images of a folder."""

from __future__ import annotations

import os
from pathlib import Path

SUPPORTED_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr")


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
