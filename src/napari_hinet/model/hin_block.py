"""The HIN block (paper Fig. 3): a U-Net encoder block with Half Instance Normalization.

A HIN block applies a 3x3 conv, normalises the *first half* of its channels with
InstanceNorm (affine, biased variance, eps 1e-5), keeps the other half as is,
then LeakyReLU -> 3x3 conv -> LeakyReLU, and adds a 1x1-conv identity path.
With ``use_hin=False`` the same block is the plain "Res block" of the decoder.

In stage 2 of HINet, encoder blocks also receive the stage-1 encoder and
decoder features at the same resolution: cross-stage feature fusion (CSFF,
see :mod:`napari_hinet.model.csff`).

Attribute names (``identity``, ``conv_1``, ``conv_2``, ``csff_enc``,
``csff_dec``, ``norm``, ``downsample``) and their registration order match
the official implementation so that its ``state_dict`` loads unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .csff import cross_stage_fusion


class HalfInstanceNorm(nn.InstanceNorm2d):
    """Half Instance Normalization: InstanceNorm on the first half of the channels.

    ``HalfInstanceNorm(channels)`` holds affine parameters for ``channels // 2``
    features (keys ``weight``/``bias``, as the official ``norm``), takes
    (N, channels, H, W) and returns the same shape: channels ``[0, C/2)``
    normalised per sample over H x W (biased variance, eps 1e-5), the rest
    passed through. ``channels`` must be even.
    """

    def __init__(self, channels: int) -> None:
        if channels % 2:
            raise ValueError(
                f"Half Instance Normalization needs an even channel count, got {channels}; "
                "choose an even width (wf)."
            )
        super().__init__(channels // 2, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        first, second = torch.chunk(x, 2, dim=1)
        return torch.cat([super().forward(first), second], dim=1)


class UNetConvBlock(nn.Module):
    """One encoder/decoder level: (HIN) conv block, optional CSFF and 4x4/2 downsample.

    Args:
        in_size: input channels.
        out_size: output channels (must be even when ``use_hin``).
        downsample: add a strided 4x4 conv that halves H and W.
        relu_slope: negative slope of the LeakyReLUs.
        use_csff: add the two CSFF 3x3 convs (stage-2 encoder only).
        use_hin: normalise half of the channels after ``conv_1``.

    ``forward(x, enc=None, dec=None)`` returns ``(downsampled, skip)`` when
    ``downsample`` is set, else the block output. Shapes: ``x`` is
    (N, in_size, H, W); outputs are (N, out_size, H/2, W/2) and (N, out_size, H, W).
    """

    def __init__(
        self,
        in_size: int,
        out_size: int,
        downsample: bool,
        relu_slope: float,
        use_csff: bool = False,
        use_hin: bool = False,
    ) -> None:
        super().__init__()
        self.identity = nn.Conv2d(in_size, out_size, 1, 1, 0)
        self.conv_1 = nn.Conv2d(in_size, out_size, 3, padding=1, bias=True)
        self.conv_2 = nn.Conv2d(out_size, out_size, 3, padding=1, bias=True)
        self.relu_1 = nn.LeakyReLU(relu_slope, inplace=False)
        self.relu_2 = nn.LeakyReLU(relu_slope, inplace=False)
        self.use_csff = downsample and use_csff
        if self.use_csff:
            self.csff_enc = nn.Conv2d(out_size, out_size, 3, 1, 1)
            self.csff_dec = nn.Conv2d(out_size, out_size, 3, 1, 1)
        self.use_hin = use_hin
        if use_hin:
            self.norm = HalfInstanceNorm(out_size)
        self.downsample = (
            nn.Conv2d(out_size, out_size, kernel_size=4, stride=2, padding=1, bias=False)
            if downsample
            else None
        )

    def forward(
        self, x: Tensor, enc: Tensor | None = None, dec: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        out = self.conv_1(x)
        if self.use_hin:
            out = self.norm(out)
        out = self.relu_1(out)
        out = self.relu_2(self.conv_2(out))
        out = out + self.identity(x)
        if self.use_csff and enc is not None and dec is not None:
            out = out + cross_stage_fusion(enc, dec, self.csff_enc, self.csff_dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out
