"""Widening a trained HINet (a larger ``wf``) without changing what it computes.

A wider model trained from scratch on our 2-core machines would need as many steps as
the narrow one already had (tens of thousands). Instead, :func:`widen` copies the narrow
model into a wider one so that the wider one starts with *exactly* the same output, and
training then uses the new channels (function-preserving growth, as Net2Net, Chen et al.,
ICLR 2016, with zero-initialised outgoing weights instead of replicated units).

Rules, applied in this order to every parameter of the wider model:

1. **Channel maps.** A feature tensor of level ``i`` (``w = wf * 2**i`` channels) keeps
   its old channel ``c`` at ``c`` in the first half and at ``c + (w' - w) / 2`` in the
   second half, so the channels that Half Instance Normalization normalises (the first
   half) stay the first half. New channels fill the end of each half.
2. **Concatenations** map each part with its own level map: a decoder block's input
   ``cat([up(x), bridge])`` and ``cat12``'s ``cat([conv_02(image), feature])`` hold two
   level tensors one after the other. Image channels (``in_chn``) are not widened.
3. **Old weights** go to their mapped positions; weights from a *new* input channel
   into an old output are 0, so the new channels change no old activation.
4. **New output channels** keep the wider model's fresh initialisation (random
   weights, as PyTorch initialises a convolution; bias 0; Instance-Norm scale 1 and
   shift 0), so they compute something and receive gradient; their outgoing weights
   are 0 by rule 3, so the output is unchanged.

The result is a plain :class:`~napari_hinet.model.HINet` with ``wf`` as given; its
output equals the narrow model's up to float rounding (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model import HINet

__all__ = ["widen"]


def _level_map(width: int, new_width: int) -> Tensor:
    """Positions of the old channels ``0..width-1`` in a tensor of ``new_width`` (rule 1)."""
    half, extra = width // 2, (new_width - width) // 2
    return torch.tensor([c if c < half else c + extra for c in range(width)])


def _concat_map(width: int, new_width: int) -> Tensor:
    """The map of ``cat([a, b])`` with ``a`` and ``b`` both of level width ``width`` (rule 2)."""
    part = _level_map(width, new_width)
    return torch.cat([part, part + new_width])


def _channel_maps(name: str, old: Tensor, cfg: dict, wf: int) -> tuple[Tensor | None, Tensor | None]:
    """``(output map, input map)`` of one parameter; None where a dimension is not widened."""
    scale = wf / cfg["wf"]
    image = cfg["in_chn"]

    def level(width: int) -> Tensor | None:
        return None if width == image else _level_map(width, round(width * scale))

    if name.endswith(("norm.weight", "norm.bias")):  # first half only: its map is the identity
        return torch.arange(old.shape[0]), None
    if old.dim() == 1:  # a bias
        return level(old.shape[0]), None
    if name.endswith("up.weight"):  # ConvTranspose2d: (in, out, k, k)
        return level(old.shape[1]), level(old.shape[0])
    out_map = level(old.shape[0])
    n_in = old.shape[1]
    concat_input = name.startswith("cat12.") or (
        name.startswith("up_path_")
        and name.endswith(("conv_block.identity.weight", "conv_block.conv_1.weight"))
    )
    in_map = _concat_map(n_in // 2, round(n_in // 2 * scale)) if concat_input else level(n_in)
    return out_map, in_map


def widen(model: HINet, wf: int) -> HINet:
    """A copy of ``model`` with first-level width ``wf`` that computes the same output.

    Args:
        model: a HINet (any ``in_chn`` and ``depth``); not modified.
        wf: the new width, at least the old one and even, with ``wf * 2**i`` channels at
            level ``i`` as in :class:`~napari_hinet.model.HINet`.

    Returns:
        A new HINet (on the CPU, float32, train mode as constructed) with the old
        weights placed by the rules of this module; ``metadata`` is not copied.
    """
    cfg = dict(model.config)
    if wf < cfg["wf"] or wf % 2:
        raise ValueError(f"widen: the new width must be even and at least {cfg['wf']}, got {wf}")
    wide = HINet(**{**cfg, "wf": wf})
    old_state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    state = wide.state_dict()
    for name, new in state.items():
        old = old_state[name]
        out_map, in_map = _channel_maps(name, old, cfg, wf)
        transposed = name.endswith("up.weight")
        if new.dim() == 1:
            if out_map is not None and old.shape[0] != new.shape[0] and not name.endswith("norm.weight"):
                new.zero_()  # rule 4: new biases and Instance-Norm shifts start at 0
            new[out_map if out_map is not None else slice(None)] = old
            continue
        if transposed:  # work on (out, in, k, k)
            new, old = new.transpose(0, 1), old.transpose(0, 1)
        rows = out_map if out_map is not None else torch.arange(old.shape[0])
        cols = in_map if in_map is not None else torch.arange(old.shape[1])
        new[rows] = 0.0  # rule 3: old outputs ignore the new inputs
        new[rows[:, None], cols[None, :]] = old
    wide.load_state_dict(state)
    return wide
