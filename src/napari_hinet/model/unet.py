"""U-Net decoder stage pieces: the up block.

Each HINet stage is a U-Net: ``depth`` encoder levels of
:class:`~napari_hinet.model.hin_block.UNetConvBlock` (channels ``wf * 2**i``,
halving H and W between levels) and ``depth - 1`` decoder levels of
:class:`UNetUpBlock`, with a 3x3 "skip conv" on every encoder-to-decoder
bridge.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .hin_block import UNetConvBlock


class UNetUpBlock(nn.Module):
    """Decoder level: 2x2/2 transposed conv, concat with the bridge, plain conv block.

    ``forward(x, bridge)``: ``x`` (N, in_size, h, w), ``bridge`` (N, out_size, 2h, 2w)
    -> (N, out_size, 2h, 2w). The upsampled tensor comes first in the concat.
    """

    def __init__(self, in_size: int, out_size: int, relu_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_size, out_size, kernel_size=2, stride=2, bias=True)
        self.conv_block = UNetConvBlock(in_size, out_size, downsample=False, relu_slope=relu_slope)

    def forward(self, x: Tensor, bridge: Tensor) -> Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))
