"""Any-size input: reflect-pad to a size HINet accepts, crop back afterwards.

HINet needs H and W to be multiples of ``2**(depth-1)``. When HIN reaches the
bottleneck level, InstanceNorm there also needs more than one pixel, so the
padded size must give a bottleneck of at least 2 pixels along one axis; we
simply require at least 2 pixels along *both* axes (``2 * 2**(depth-1)``),
which is always safe.
"""

from __future__ import annotations

import torch
from torch import Tensor


def valid_size(n: int, multiple: int, minimum: int) -> int:
    """Smallest size >= max(n, minimum) that is a multiple of ``multiple``."""
    n = max(n, minimum)
    return -(-n // multiple) * multiple


def reflect_indices(n: int, target: int) -> Tensor:
    """Indices ``0..target-1`` folded into ``[0, n)`` by repeated reflection.

    Equals ``F.pad(..., mode="reflect")`` where that works (padding < n) and
    keeps reflecting beyond it; a length-1 axis is replicated.
    """
    i = torch.arange(target)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i % period
    return torch.where(i < n, i, period - i)


def pad_to_valid(x: Tensor, multiple: int, minimum: int | None = None) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``x`` (N, C, H, W) at the bottom/right to a valid network size.

    The padded H and W are the smallest multiples of ``multiple`` that are
    at least ``minimum`` (default ``2 * multiple``). Returns the padded tensor
    and the original (H, W) for :func:`crop_to`.
    """
    minimum = 2 * multiple if minimum is None else minimum
    h, w = x.shape[-2:]
    th, tw = valid_size(h, multiple, minimum), valid_size(w, multiple, minimum)
    if (th, tw) != (h, w):
        x = x.index_select(-2, reflect_indices(h, th).to(x.device))
        x = x.index_select(-1, reflect_indices(w, tw).to(x.device))
    return x, (h, w)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Undo :func:`pad_to_valid`: keep the top-left ``size`` = (H, W)."""
    return x[..., : size[0], : size[1]]


def run_any_size(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Forward ``x`` (N, C, H, W) of any H, W >= 1 through HINet; return ``out_2`` cropped."""
    multiple = 2 ** (model.depth - 1)
    padded, size = pad_to_valid(x, multiple)
    return crop_to(model(padded)[-1], size)
