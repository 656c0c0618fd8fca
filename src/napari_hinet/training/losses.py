"""Training losses of the official HINet recipe.

Both are applied to *each* network output (stage 1 and stage 2) and the results
summed, as the official training code does (see :func:`two_stage_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["L1Loss", "PSNRLoss", "make_loss", "psnr", "two_stage_loss"]


class PSNRLoss(nn.Module):
    """Minus the per-image PSNR (peak 1), averaged over the batch, times ``weight``.

    ``loss = weight * 10/ln(10) * mean_n ln(mean_{C,H,W}((pred - target)^2) + 1e-8)``.
    The official GoPro/REDS/Rain13k configurations use ``weight=0.5``.
    """

    def __init__(self, weight: float = 0.5, eps: float = 1e-8) -> None:
        super().__init__()
        self.weight = weight
        self.eps = eps
        self.scale = 10.0 / math.log(10.0)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1)
        return self.weight * self.scale * torch.log(mse + self.eps).mean()


class L1Loss(nn.Module):
    """``weight * mean|pred - target|`` (the official SIDD denoising loss, weight 1)."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.weight * (pred.float() - target.float()).abs().mean()


def make_loss(name: str, weight: float | None = None) -> nn.Module:
    """``"psnr"`` (default weight 0.5) or ``"l1"`` (default weight 1.0)."""
    if name == "psnr":
        return PSNRLoss(0.5 if weight is None else weight)
    if name == "l1":
        return L1Loss(1.0 if weight is None else weight)
    raise ValueError(f"unknown loss {name!r}; choose 'psnr' or 'l1'")


def two_stage_loss(loss: nn.Module, outputs: Sequence[Tensor], target: Tensor) -> Tensor:
    """Sum of ``loss(out, target)`` over the network outputs ``[out_1, out_2]``."""
    return sum((loss(out, target) for out in outputs), start=torch.zeros((), device=target.device))


@torch.no_grad()
def psnr(pred: Tensor, target: Tensor, peak: float = 1.0) -> float:
    """Mean over the batch of the per-image PSNR in dB; ``pred`` is clamped to [0, peak]."""
    mse = ((pred.float().clamp(0, peak) - target.float()) ** 2).flatten(1).mean(dim=1)
    return float((10.0 * torch.log10(peak**2 / mse.clamp_min(1e-12))).mean())
