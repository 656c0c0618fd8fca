"""ONNX export: dynamic batch, height and width; opset 17.

1. The exported graph is :class:`~napari_hinet.exchange.network.HINetImage`:
   input ``"input"`` (N, C, H, W) float32 in the network's [0, 1] units,
   output ``"output"`` of the same shape (the final restored image). N, H
   and W are dynamic; H and W must be multiples of ``2**(depth-1)`` and at
   least twice that (the same rule as the PyTorch model).
2. Opset 17 (:data:`OPSET`): every operator HINet needs (Conv,
   ConvTranspose, InstanceNormalization, Split, LeakyRelu, Sigmoid) exists
   in it unchanged; it is the last opset before 18 changed the signatures of
   Split and the Reduce* operators, and ONNX Runtime has run it since 1.12
   (2022), so older runtimes embedded in Java tools (deepImageJ, Icy) load it.
3. The graph is written by PyTorch's TorchScript-based exporter
   (``dynamo=False``): in torch 2.13 it needs no extra package and exported a
   small HINet in 1.2 s against 13.5 s for the ``torch.export`` path, with
   the same outputs. (Torch marks it deprecated; the day it is removed,
   switch to ``dynamo=True`` with ``onnxscript`` installed.)
4. The file is checked with ``onnx.checker`` and written atomically.

Accuracy (tests/exchange/test_onnx.py, measured in docs/sharing.md): the
ONNX Runtime CPU output differs from torch float32 by at most ~1e-6 on
[0, 1] data; the tests allow :data:`ATOL` = 1e-4, 1/39 of an 8-bit grey
level, the margin fp32 rounding in ~40 differently-ordered convolutions may
need on other CPUs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ..io import atomic_output
from ..model import HINet
from .network import example_input, image_network, traceable

__all__ = ["ATOL", "OPSET", "export_onnx"]

#: ONNX opset written (see rule 2 of the module docstring).
OPSET = 17
#: Largest |onnx - torch| accepted in float32, in network units ([0, 1] data).
ATOL = 1e-4


def export_onnx(model: HINet, path: str | os.PathLike) -> Path:
    """Write ``model`` (its final output ``out_2``) as an ONNX file; returns the path.

    Args:
        model: a HINet (any device; exported from a float32 CPU copy).
        path: destination, normally ``<name>.onnx``; parent folders are created.

    Input ``"input"``: (N, C, H, W) float32; output ``"output"``: same shape.
    The file is written to a temporary name and renamed (never half-written).
    """
    import onnx

    traceable(model)
    path = Path(path)
    net = image_network(model)
    with atomic_output(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice and tracer remarks about the
        # InstanceNorm size checks (they are shape checks, not part of the graph)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example_input(model),),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in ("input", "output")},
            do_constant_folding=True,
        )
        onnx.checker.check_model(str(tmp), full_check=True)
    return path
