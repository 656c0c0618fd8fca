"""HINet: the two-stage Half Instance Normalization Network (Chen et al., CVPRW 2021).

Stage 1 and stage 2 are U-Nets of HIN blocks. Between them, the supervised
attention module (SAM) produces the stage-1 image ``out_1`` and an attended
feature; stage 2 starts again from the *input image* (``conv_02``), fuses that
feature in (``cat12``), and receives the stage-1 encoder/decoder features at
every encoder level (CSFF). ``out_2 = last(stage-2 output) + image`` is the
restored image.

Module names, registration order and therefore ``state_dict`` keys equal the
official implementation (megvii-model/HINet), so the released checkpoints load
with ``strict=True``. Input H and W must be multiples of ``2**(depth-1)``; see
:func:`napari_hinet.model.padding.pad_to_valid` for any-size input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .hin_block import UNetConvBlock
from .sam import SAM
from .unet import UNetUpBlock


class HINet(nn.Module):
    """HINet with the official constructor arguments.

    Args:
        in_chn: image channels (3 for RGB; 1 or 2 work too).
        wf: width of the first level; level ``i`` has ``wf * 2**i`` channels.
        depth: number of U-Net levels per stage (5 in all official models).
        relu_slope: LeakyReLU negative slope (0.2).
        hin_position_left, hin_position_right: encoder levels (inclusive range)
            whose blocks use Half Instance Normalization.

    ``forward(x)`` takes (N, in_chn, H, W) float and returns
    ``[out_1, out_2]``, both (N, in_chn, H, W): the stage-1 (SAM) image and the
    final restored image. Inference uses ``out_2``.
    """

    def __init__(
        self,
        in_chn: int = 3,
        wf: int = 64,
        depth: int = 5,
        relu_slope: float = 0.2,
        hin_position_left: int = 0,
        hin_position_right: int = 4,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.config = {
            "in_chn": in_chn,
            "wf": wf,
            "depth": depth,
            "relu_slope": relu_slope,
            "hin_position_left": hin_position_left,
            "hin_position_right": hin_position_right,
        }
        self.depth = depth
        # Provenance and usage hints (task, patch size, sha256...), filled by
        # napari_hinet.checkpoints.load_model; not part of the state_dict.
        self.metadata: dict = {}

        # --- encoders of stage 1 and stage 2 (stage 2 adds CSFF) -----------
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        prev = wf
        for i in range(depth):
            use_hin = hin_position_left <= i <= hin_position_right
            downsample = i + 1 < depth
            width = (2**i) * wf
            self.down_path_1.append(UNetConvBlock(prev, width, downsample, relu_slope, use_hin=use_hin))
            self.down_path_2.append(
                UNetConvBlock(prev, width, downsample, relu_slope, use_csff=downsample, use_hin=use_hin)
            )
            prev = width

        # --- stems: both stages start from the input image -----------------
        self.conv_01 = nn.Conv2d(in_chn, wf, 3, 1, 1)
        self.conv_02 = nn.Conv2d(in_chn, wf, 3, 1, 1)

        # --- decoders and encoder->decoder skip convs ----------------------
        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for i in reversed(range(depth - 1)):  # level i = depth-2 ... 0
            width = (2**i) * wf
            self.up_path_1.append(UNetUpBlock(prev, width, relu_slope))
            self.up_path_2.append(UNetUpBlock(prev, width, relu_slope))
            self.skip_conv_1.append(nn.Conv2d(width, width, 3, 1, 1))
            self.skip_conv_2.append(nn.Conv2d(width, width, 3, 1, 1))
            prev = width

        # --- between and after the stages ----------------------------------
        self.sam12 = SAM(wf, img_channels=in_chn)
        self.cat12 = nn.Conv2d(wf * 2, wf, 1, 1, 0)
        self.last = nn.Conv2d(prev, in_chn, 3, 1, 1, bias=True)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (``2**(depth-1)``)."""
        return 2 ** (self.depth - 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        image = x

        # Stage 1: U-Net -> SAM.
        h = self.conv_01(image)
        enc_1: list[Tensor] = []  # enc_1[i]: stage-1 encoder feature at level i
        for block in self.down_path_1[:-1]:
            h, skip = block(h)
            enc_1.append(skip)
        h = self.down_path_1[-1](h)
        dec_1: list[Tensor] = []  # dec_1[k]: stage-1 decoder output at level depth-2-k
        for k, up in enumerate(self.up_path_1):
            h = up(h, self.skip_conv_1[k](enc_1[-k - 1]))
            dec_1.append(h)
        feature, out_1 = self.sam12(h, image)

        # Stage 2: fuse the SAM feature, U-Net with CSFF, global residual.
        g = self.cat12(torch.cat([self.conv_02(image), feature], dim=1))
        enc_2: list[Tensor] = []
        for i, block in enumerate(self.down_path_2[:-1]):
            g, skip = block(g, enc_1[i], dec_1[-i - 1])
            enc_2.append(skip)
        g = self.down_path_2[-1](g)
        for k, up in enumerate(self.up_path_2):
            g = up(g, self.skip_conv_2[k](enc_2[-k - 1]))
        out_2 = self.last(g) + image
        return [out_1, out_2]
