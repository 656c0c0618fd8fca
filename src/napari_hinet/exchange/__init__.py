"""Model exchange: bioimage.io packages in and out, ONNX and TorchScript export.

One module per format: :mod:`.bioimageio` (write a BioImage Model Zoo
package), :mod:`.rdf` (read one; no torch), :mod:`.onnx`, :mod:`.torchscript`;
:mod:`.network` holds what they share (the single-output network and the
one-file architecture source). Importing this package imports none of them.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "INSTALL_HINT", "SUFFIXES", "export", "format_for"]

#: format -> (module, function) writing it
_WRITERS = {
    "bioimageio": ("napari_hinet.exchange.bioimageio", "export_bioimageio"),
    "onnx": ("napari_hinet.exchange.onnx", "export_onnx"),
    "torchscript": ("napari_hinet.exchange.torchscript", "export_torchscript"),
}
FORMATS = tuple(_WRITERS)
#: usual file suffix of each format
SUFFIXES = {"bioimageio": ".zip", "onnx": ".onnx", "torchscript": ".pt"}
#: extra that installs what writing a format needs
INSTALL_HINT = "install the export extra: pip install 'napari-hinet[export]'"


def format_for(path: str | os.PathLike) -> str:
    """The format a file name asks for: ``.onnx`` -> onnx, ``.pt`` -> torchscript, else bioimageio."""
    suffix = Path(path).suffix.lower()
    return next((f for f, s in SUFFIXES.items() if s == suffix), "bioimageio")


def export(model: Any, path: str | os.PathLike, format: str = "bioimageio", **metadata: Any) -> Path:
    """Write ``model`` in another format; returns the path written.

    Args:
        model: a :class:`~napari_hinet.HINet`, a registry name (e.g.
            ``"hinet-denoise-fluo"``) or a weights file / package path
            (anything :func:`~napari_hinet.load_model` accepts).
        path: destination file: ``.zip`` for ``"bioimageio"``, ``.onnx``,
            ``.pt`` for ``"torchscript"`` (other names are kept as given).
        format: ``"bioimageio"`` (a BioImage Model Zoo package with
            pytorch_state_dict, TorchScript and ONNX weights, test tensors,
            cover, README; see :func:`.bioimageio.export_bioimageio`),
            ``"onnx"`` or ``"torchscript"`` (the bare network, final output
            only; input (N, C, H, W) float32 in [0, 1] network units).
        **metadata: for ``"bioimageio"`` only: fields of the package
            (``name``, ``description``, ``authors``, ``licence``, ``tags``,
            ``image``...; see :func:`.bioimageio.export_bioimageio`).

    Raises ``ValueError`` for an unknown format or metadata given for a bare
    format, ``ImportError`` (saying what to install) when the export extra is missing.
    """
    if format not in _WRITERS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    if metadata and format != "bioimageio":
        raise ValueError(
            f"Metadata ({', '.join(sorted(metadata))}) can only be stored in a bioimage.io package; "
            f"the {format} file holds the network alone."
        )
    from .network import as_model

    module, function = _WRITERS[format]
    try:
        writer = getattr(import_module(module), function)
        return writer(as_model(model), path, **metadata)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("bioimageio", "onnx", "onnxruntime", "onnxscript"):
            raise ImportError(f"Writing {format} needs the package {exc.name!r}: {INSTALL_HINT}.") from exc
        raise
