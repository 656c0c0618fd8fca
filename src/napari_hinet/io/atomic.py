"""The one atomic write of the package (:func:`atomic_output`) and how a full disk is recognised."""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .image import ImageFormatError, OutputSpaceError

PARTIAL_SUFFIX = ".napari-hinet-partial"


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
