"""Axes: guess or check an axes string and read/write (C, Y, X) regions of any plane.

An axes string names every axis of the input with one upper-case letter:
``Y`` and ``X`` (required), ``C`` (channels, optional) and any other letters
(``T``, ``Z``, ``S``...) for *plane* axes, which are processed one 2-D plane at
a time. Examples: ``"YX"``, ``"YXC"``, ``"CYX"``, ``"ZYX"``, ``"TZYX"``, ``"TCZYX"``.

The guess (``axes=None``) follows napari's RGB rule: data with at least 3
dimensions whose **last** axis has length 3 or 4 is RGB(A) (``...YXC``). Otherwise
the last two axes are ``YX`` and the leading ones are planes: 3-D ``ZYX``, 4-D
``TZYX``, 5-D ``TCZYX`` (the OME order); more than 5 dimensions must be named.

A channel axis is *colour* (RGB, RGBA) only when it is the last axis and has
length 3 or 4, the way napari displays such data (override with ``rgb=``);
any other channel axis holds independent channels (fluorescence).

:class:`Layout` reads and writes regions through plain ``array[index]``
indexing, so numpy arrays, zarr arrays and memory maps all work and nothing is
copied or loaded beyond the requested region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Guessed axes by number of dimensions when the data is not RGB.
_GUESS = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}
#: Guessed axes by number of dimensions when the last axis is RGB(A).
_GUESS_RGB = {3: "YXC", 4: "ZYXC", 5: "TZYXC"}


def guess_axes(shape: tuple[int, ...]) -> str:
    """Axes for an array of ``shape`` following napari's rules (see module docstring)."""
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"Need at least a 2-D image (Y, X); got shape {tuple(shape)}.")
    if ndim in _GUESS_RGB and shape[-1] in (3, 4):
        return _GUESS_RGB[ndim]
    if ndim in _GUESS:
        return _GUESS[ndim]
    raise ValueError(
        f"Cannot guess the axes of {ndim}-D data with shape {tuple(shape)}; pass axes=, "
        "e.g. axes='STCZYX' (one letter per axis: Y and X required, C for channels)."
    )


def check_axes(axes: str, shape: tuple[int, ...]) -> str:
    """Validate ``axes`` for ``shape``; return it upper-cased. Raises ``ValueError``."""
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'ZYX', got {type(axes).__name__}.")
    axes = axes.upper()
    if len(axes) != len(shape):
        raise ValueError(
            f"axes={axes!r} has {len(axes)} letters but the data has {len(shape)} dimensions "
            f"(shape {tuple(shape)}); give one letter per axis."
        )
    if not all("A" <= a <= "Z" for a in axes):
        raise ValueError(f"axes={axes!r} may only contain letters A-Z, one per axis.")
    repeated = sorted({a for a in axes if axes.count(a) > 1})
    if repeated:
        raise ValueError(f"axes={axes!r} repeats {', '.join(repeated)}; each letter may appear once.")
    missing = [a for a in "YX" if a not in axes]
    if missing:
        raise ValueError(
            f"axes={axes!r} lacks {' and '.join(missing)}; Y and X (the image plane) are required."
        )
    return axes


@dataclass(frozen=True)
class Layout:
    """Where Y, X, channels and planes are in an array, and how to index regions.

    Attributes:
        axes: the validated axes string.
        shape: the array shape.
        rgb: the channel axis is colour (RGB or RGBA) rather than independent channels.
    """

    axes: str
    shape: tuple[int, ...]
    rgb: bool

    @classmethod
    def create(cls, shape: tuple[int, ...], axes: str | None = None, rgb: bool | None = None) -> Layout:
        """Layout for ``shape``; ``axes=None`` guesses, ``rgb=None`` applies the RGB rule."""
        shape = tuple(int(s) for s in shape)
        axes = guess_axes(shape) if axes is None else check_axes(axes, shape)
        if 0 in shape:
            raise ValueError(
                f"The image of shape {shape} (axes {axes}) holds no pixels: axis "
                f"{axes[shape.index(0)]} has length 0. Nothing to restore; check how the data were loaded."
            )
        channels = shape[axes.index("C")] if "C" in axes else 1
        if rgb is None:
            rgb = axes.endswith("C") and channels in (3, 4)
        elif rgb and channels not in (3, 4):
            raise ValueError(f"rgb=True needs a channel axis of length 3 or 4; axes={axes!r}, shape {shape}.")
        return cls(axes=axes, shape=shape, rgb=bool(rgb))

    # ------------------------------------------------------------ sizes
    @property
    def plane_axes(self) -> tuple[int, ...]:
        """Indices of the plane axes (all but Y, X and C), in array order."""
        return tuple(i for i, a in enumerate(self.axes) if a not in "YXC")

    @property
    def n_planes(self) -> int:
        return math.prod(self.shape[i] for i in self.plane_axes)

    @property
    def height(self) -> int:
        return self.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        return self.shape[self.axes.index("X")]

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    @property
    def has_alpha(self) -> bool:
        return self.rgb and self.channels == 4

    # ------------------------------------------------------------ indexing
    def _index(self, plane: int, rows: slice, cols: slice, channel: int | None) -> tuple[Any, ...]:
        plane_pos = (
            np.unravel_index(plane, [self.shape[i] for i in self.plane_axes]) if self.plane_axes else ()
        )
        plane_iter = iter(int(p) for p in plane_pos)
        index: list[Any] = []
        for a in self.axes:
            if a == "Y":
                index.append(rows)
            elif a == "X":
                index.append(cols)
            elif a == "C":
                index.append(slice(None) if channel is None else channel)
            else:
                index.append(next(plane_iter))
        return tuple(index)

    def _order(self, with_channel: bool) -> list[int]:
        """Positions of (C,) Y, X among the axes left after integer indexing."""
        kept = [a for a in self.axes if a in ("YXC" if with_channel else "YX")]
        return [kept.index(a) for a in ("CYX" if with_channel else "YX")]

    def read(
        self, array: Any, plane: int, y0: int, y1: int, x0: int = 0, x1: int | None = None, step: int = 1
    ) -> np.ndarray:
        """Region rows ``y0:y1``, cols ``x0:x1`` (every ``step``-th) of ``plane`` as (C, h, w).

        C = 1 when there is no C axis. Only that region is read from ``array``.
        """
        x1 = self.width if x1 is None else x1
        block = np.asarray(array[self._index(plane, slice(y0, y1, step), slice(x0, x1, step), None)])
        if "C" in self.axes:
            return block.transpose(self._order(True))
        return block.transpose(self._order(False))[None]

    def write(self, out: Any, plane: int, channel: int | None, y0: int, y1: int, data: np.ndarray) -> None:
        """Write ``data`` (h, W) into rows ``y0:y1`` (full width) of one channel of ``plane``."""
        index = self._index(plane, slice(y0, y1), slice(None), channel if "C" in self.axes else None)
        out[index] = data if self.axes.index("Y") < self.axes.index("X") else data.T
