"""Supervised attention module (SAM, paper Sec. 3.2, from MPRNet).

SAM sits between the two stages. From the stage-1 decoder feature ``x``
(N, wf, H, W) it predicts a restored image ``img = conv2(x) + x_img`` (this is
``out_1``, supervised by the loss) and an attention map
``sigmoid(conv3(img))`` that gates ``conv1(x)``; the gated feature plus ``x``
goes on to stage 2.

The official code hard-codes 3 image channels in ``conv2``/``conv3``; here
they follow ``img_channels`` (= the network's ``in_chn``), which is identical
for the released 3-channel checkpoints and makes 1- and 2-channel models work.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SAM(nn.Module):
    """Supervised attention module.

    Args:
        n_feat: feature channels (the network width ``wf``).
        img_channels: image channels (3 in all official checkpoints).
        kernel_size: conv kernel size (3).
        bias: conv bias (True).
    """

    def __init__(self, n_feat: int, img_channels: int = 3, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(n_feat, n_feat, kernel_size, padding=pad, bias=bias)
        self.conv2 = nn.Conv2d(n_feat, img_channels, kernel_size, padding=pad, bias=bias)
        self.conv3 = nn.Conv2d(img_channels, n_feat, kernel_size, padding=pad, bias=bias)

    def forward(self, x: Tensor, x_img: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: (N, n_feat, H, W); ``x_img``: (N, C, H, W). Returns (feature, image)."""
        x1 = self.conv1(x)
        img = self.conv2(x) + x_img
        attention = torch.sigmoid(self.conv3(img))
        return x1 * attention + x, img
