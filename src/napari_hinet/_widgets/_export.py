"""The **Export…** action of the restore widgets' model picker and of the Fine-tune widget.

UI only: a save dialog (format from the chosen filter or suffix), a licence
question when a bioimage.io package needs one the model does not state, and
a napari thread worker that calls :func:`napari_hinet.export` (docs/sharing.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Value of the model picker's "Export…" entry.
EXPORT_MODEL = "__export_model__"

_FILTERS = {
    "bioimage.io package (*.zip)": "bioimageio",
    "ONNX (*.onnx)": "onnx",
    "TorchScript (*.pt)": "torchscript",
}
_LICENCES = ["CC-BY-4.0", "MIT", "BSD-3-Clause", "Apache-2.0", "CC0-1.0"]


def ask_export(parent: Any, model: str) -> tuple[str, dict[str, Any]] | None:
    """Ask where (and, if needed, under which licence) to export ``model``; ``None`` if cancelled.

    Returns ``(path, options)`` for :func:`start_export`.
    """
    from qtpy.QtWidgets import QFileDialog, QInputDialog

    from napari_hinet.exchange import SUFFIXES, format_for

    stem = Path(str(model)).stem
    path, chosen = QFileDialog.getSaveFileName(
        parent, f"Export {stem}", str(Path.home() / f"{stem}.zip"), ";;".join(_FILTERS)
    )
    if not path:
        return None
    fmt = _FILTERS.get(chosen) or format_for(path)
    if Path(path).suffix.lower() != SUFFIXES[fmt]:
        path += SUFFIXES[fmt]
    options: dict[str, Any] = {"format": fmt}
    if fmt == "bioimageio" and needs_licence(model):
        licence, ok = QInputDialog.getItem(
            parent,
            "Licence of the weights",
            f"{stem} states no SPDX licence. Share its weights under:",
            _LICENCES,
            0,
            True,
        )
        if not ok or not licence.strip():
            return None
        options["licence"] = licence.strip()
    return path, options


def needs_licence(model: str) -> bool:
    """Whether ``model`` (registry name or file) states no SPDX licence a package could carry."""
    from napari_hinet.exchange.bioimageio import licence_id
    from napari_hinet.registry import list_models

    info = next((m for m in list_models() if m.name == model), None)
    text = info.licence if info is not None else ""
    return licence_id(text) is None


def start_export(
    model: Any,
    path: str | Path,
    options: dict[str, Any],
    on_done: Callable[[Path], None],
    on_error: Callable[[BaseException], None],
) -> Any:
    """Run :func:`napari_hinet.export` in a napari thread worker; returns the started worker."""
    from napari.qt.threading import create_worker

    from napari_hinet.exchange import export

    worker = create_worker(export, model, path, **options, _start_thread=False)
    worker.returned.connect(on_done)
    worker.errored.connect(on_error)
    worker.start()
    return worker
