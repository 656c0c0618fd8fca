"""Test-time Local Converter (TLC): Half Instance Normalization with local statistics.

Chu, Chen, Chen, Lu, "Improving Image Restoration by Revisiting Global
Information Aggregation", ECCV 2022 (code: megvii-research/TLC).

A model trained on ``P x P`` patches has only ever seen instance-norm
statistics of a ``P x P`` patch (``P / 2**i`` at U-Net level ``i``). Run on a
whole, larger image, the global mean and variance of a feature map aggregate
far more than training did, and quality drops. TLC keeps the weights and, at
test time only, replaces each global statistic by the statistic of a *local*
window of the training size around each position:

1. the window at level ``i`` is ``round(P * scale / 2**i)`` pixels on each side
   (at least 1); ``scale`` is 1 by default (the paper also uses 1.5);
2. mean and variance (biased, as InstanceNorm) are box averages of ``x`` and
   ``x**2`` over the window, taken after subtracting the feature map's global
   mean (variance is shift-invariant; the shift keeps ``E[x^2] - E[x]^2``
   accurate in float32);
3. at the border the window either stays whole and slides inside the map
   (``border="clamp"``, as the paper: each position gets the statistics of a
   training-sized patch that contains it) or is cut by the map edge
   (``border="shrink"``);
4. a window at least as large as the map gives exactly the global statistics
   (``"shrink"`` needs twice the map size for that, ``"clamp"`` the map size).

:func:`set_statistics` switches the HIN blocks of a :class:`~.hinet.HINet` in
place between ``"global"`` (the paper's HINet) and ``"local"`` (HINet-Local).
Parameters are shared, so ``state_dict`` keys and values stay the same.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from .hin_block import HalfInstanceNorm

STATISTICS = ("global", "local")
BORDERS = ("clamp", "shrink")


def box_mean(x: Tensor, window: int, border: str = "clamp") -> Tensor:
    """Mean of ``x`` (N, C, H, W) over a ``window x window`` box around each position; same shape.

    The box of position ``p`` covers ``[p - window // 2, p - window // 2 + window)``
    along each axis, moved inside the map (``"clamp"``) or cut by it (``"shrink"``).
    """
    if border not in BORDERS:
        raise ValueError(f"border={border!r} is not valid; choose one of {', '.join(BORDERS)}.")
    for axis in (2, 3):
        n = x.shape[axis]
        if window >= (n if border == "clamp" else 2 * n - 1):  # every box covers the whole axis
            x = x.mean(dim=axis, keepdim=True).expand_as(x)
            continue
        k = window
        kernel = (k, 1) if axis == 2 else (1, k)
        if border == "clamp":
            x = F.avg_pool2d(x, kernel, stride=1)  # (.., n - k + 1, ..): the whole boxes
            before, after = k // 2, k - 1 - k // 2
            pad = (0, 0, before, after) if axis == 2 else (before, after, 0, 0)
            x = F.pad(x, pad, mode="replicate")  # a border position takes the first/last whole box
        else:
            half = k // 2
            padding = (half, 0) if axis == 2 else (0, half)
            x = F.avg_pool2d(x, kernel, stride=1, padding=padding, count_include_pad=False)
            x = x.narrow(axis, 0, n)  # even k gives n + 1 outputs; box p starts at p - k // 2
    return x


class LocalHalfInstanceNorm(HalfInstanceNorm):
    """Half Instance Normalization whose statistics come from a local window (TLC).

    Same parameters and state_dict keys as :class:`~.hin_block.HalfInstanceNorm`
    (``weight``/``bias`` for ``channels // 2`` features). ``forward`` takes
    (N, channels, H, W) and returns the same shape: channels ``[0, C/2)``
    normalised with the mean/variance of a ``window x window`` box around each
    position (eps 1e-5, computed in float32), the rest passed through.

    Args:
        channels: input channels (even).
        window: box edge in pixels at this block's resolution.
        border: ``"clamp"`` or ``"shrink"`` (see the module docstring, rule 3).
    """

    def __init__(self, channels: int, window: int, border: str = "clamp") -> None:
        super().__init__(channels)
        if window < 1:
            raise ValueError(f"window must be >= 1 pixel, got {window}.")
        if border not in BORDERS:
            raise ValueError(f"border={border!r} is not valid; choose one of {', '.join(BORDERS)}.")
        self.window = int(window)
        self.border = border

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}, border={self.border!r}"

    def forward(self, x: Tensor) -> Tensor:
        first, second = torch.chunk(x, 2, dim=1)
        dtype = torch.promote_types(first.dtype, torch.float32)  # bf16/fp16 autocast -> float32
        a = first.to(dtype)  # (N, C/2, H, W)
        a = a - a.mean(dim=(2, 3), keepdim=True)  # rule 2: shift by the global mean
        mean = box_mean(a, self.window, self.border)  # (N, C/2, H, W)
        var = (box_mean(a * a, self.window, self.border) - mean * mean).clamp_min(0.0)
        a = (a - mean) * torch.rsqrt(var + self.eps)
        a = a * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return torch.cat([a, second.to(dtype)], dim=1)


def hin_blocks(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(U-Net level, block) of every encoder block of a HINet with a HIN norm, both stages."""
    blocks = []
    for path in (model.down_path_1, model.down_path_2):
        for level, block in enumerate(path):
            if getattr(block, "use_hin", False):
                blocks.append((level, block))
    return blocks


def set_statistics(
    model: nn.Module,
    stats: str,
    patch_size: int | None = None,
    *,
    scale: float = 1.0,
    border: str = "clamp",
) -> nn.Module:
    """Switch the HIN blocks of ``model`` (a HINet) to global or local statistics, in place.

    Args:
        model: a :class:`~.hinet.HINet`.
        stats: ``"global"`` (InstanceNorm over the whole input, the trained
            behaviour) or ``"local"`` (TLC windows).
        patch_size: training patch edge in pixels; ``None`` = ``model.metadata["patch_size"]``,
            else 256 (the official models).
        scale: window = ``patch_size * scale`` at full resolution (TLC: 1.0 or 1.5).
        border: ``"clamp"`` (default, as the paper) or ``"shrink"``.

    Returns ``model``. Parameters are shared between the old and new norm
    modules, so the state_dict is unchanged.
    """
    if stats not in STATISTICS:
        raise ValueError(f"stats={stats!r} is not valid; choose one of {', '.join(STATISTICS)}.")
    if patch_size is None:
        patch_size = int((getattr(model, "metadata", None) or {}).get("patch_size") or 256)
    for level, block in hin_blocks(model):
        old = block.norm
        channels = 2 * old.num_features
        if stats == "global":
            new: HalfInstanceNorm = HalfInstanceNorm(channels)
        else:
            window = max(1, round(patch_size * scale / 2**level))
            new = LocalHalfInstanceNorm(channels, window, border)
        new.weight, new.bias = old.weight, old.bias  # the same Parameters: state_dict unchanged
        new.train(old.training)
        block.norm = new
    return model


def get_statistics(model: nn.Module) -> dict[str, Any]:
    """``{"stats": "global"}`` or ``{"stats": "local", "levels", "windows" (per level), "border"}``."""
    windows: dict[int, int] = {}
    border = None
    for level, block in hin_blocks(model):
        if isinstance(block.norm, LocalHalfInstanceNorm):
            windows[level] = block.norm.window
            border = block.norm.border
    if not windows:
        return {"stats": "global"}
    levels = sorted(windows)
    return {"stats": "local", "levels": levels, "windows": [windows[k] for k in levels], "border": border}
