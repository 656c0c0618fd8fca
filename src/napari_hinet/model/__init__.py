"""The HINet network, written module by module after the paper's ideas."""

from .csff import cross_stage_fusion
from .hin_block import HalfInstanceNorm, UNetConvBlock
from .hinet import HINet
from .padding import crop_to, pad_to_valid, reflect_indices, run_any_size
from .sam import SAM
from .tlc import LocalHalfInstanceNorm, get_statistics, set_statistics
from .unet import UNetUpBlock

__all__ = [
    "HINet",
    "HalfInstanceNorm",
    "LocalHalfInstanceNorm",
    "SAM",
    "UNetConvBlock",
    "UNetUpBlock",
    "crop_to",
    "cross_stage_fusion",
    "get_statistics",
    "pad_to_valid",
    "reflect_indices",
    "run_any_size",
    "set_statistics",
]
