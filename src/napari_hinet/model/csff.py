"""Cross-stage feature fusion (CSFF, paper Sec. 3.2, borrowed from MPRNet).

Stage-2 encoder level ``i`` adds 3x3-conv projections of the stage-1 encoder
feature and of the stage-1 decoder feature at the same resolution to its own
output, before downsampling. This carries multi-scale context from stage 1
into stage 2 and eases gradient flow.

The two convs live on the encoder block as ``csff_enc``/``csff_dec`` (the
official key names); this module holds the fusion rule.
"""

from __future__ import annotations

from torch import Tensor, nn


def cross_stage_fusion(enc: Tensor, dec: Tensor, conv_enc: nn.Module, conv_dec: nn.Module) -> Tensor:
    """Return ``conv_enc(enc) + conv_dec(dec)``; all tensors (N, C, H, W)."""
    return conv_enc(enc) + conv_dec(dec)
