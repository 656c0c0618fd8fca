"""TorchScript export: a file that runs with ``torch.jit.load`` alone.

1. The exported module is :class:`~napari_hinet.exchange.network.HINetImage`
   traced with :func:`torch.jit.trace` on a (2, C, 2m, 3m) input
   (m = ``2**(depth-1)``). HINet has no data-dependent control flow, so the
   trace holds for every batch size and every valid H, W (multiples of m, at
   least 2m); the tests run other sizes through the loaded file.
2. The traced module is checked against the eager model on a second input
   shape before it is written (atomically).
3. Loading needs only torch: no napari-hinet code is stored or imported
   (tests/exchange/test_torchscript.py runs it in a fresh Python process).
   Java tools (deepImageJ, QuPath, Icy) run this file through the PyTorch
   C++ library.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..io import atomic_output
from ..model import HINet
from .network import example_input, image_network, traceable

__all__ = ["ATOL", "export_torchscript"]

#: Largest |torchscript - eager| accepted in float32, in network units.
ATOL = 1e-5


def export_torchscript(model: HINet, path: str | os.PathLike) -> Path:
    """Write ``model`` (its final output ``out_2``) as a TorchScript file; returns the path.

    Args:
        model: a HINet (any device; traced from a float32 CPU copy).
        path: destination, normally ``<name>.pt``; parent folders are created.

    The file holds ``forward(x)``: (N, C, H, W) float32 -> same shape.
    """
    traceable(model)
    path = Path(path)
    net = image_network(model)
    check = example_input(model, seed=1)[:1, :, : 2 * model.size_multiple, : 2 * model.size_multiple]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer remarks about InstanceNorm's shape checks
        traced = torch.jit.trace(net, (example_input(model),), check_inputs=[(check,)], check_tolerance=ATOL)
    with atomic_output(path) as tmp:
        torch.jit.save(traced, str(tmp))
    return path
