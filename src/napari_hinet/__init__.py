"""napari-hinet: image restoration with HINet for napari, Python, the CLI and dask.

The public API is imported lazily so that ``import napari_hinet`` (which napari
does at start-up to read the plugin manifest) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "HINet": "napari_hinet.model",
    "load_model": "napari_hinet.checkpoints",
    "save_model": "napari_hinet.checkpoints",
    "list_models": "napari_hinet.registry",
    "ModelInfo": "napari_hinet.registry",
    "restore": "napari_hinet.engine",
    "Restorer": "napari_hinet.engine",
    "Cancelled": "napari_hinet.engine",
    "RestoreSettings": "napari_hinet.settings",
    "finetune": "napari_hinet.training",
    "export": "napari_hinet.exchange",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_hinet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs
    from .checkpoints import load_model, save_model
    from .engine import Cancelled, Restorer, restore
    from .exchange import export
    from .model import HINet
    from .registry import ModelInfo, list_models
    from .settings import RestoreSettings
    from .training import finetune
