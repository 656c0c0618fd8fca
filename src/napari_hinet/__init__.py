"""napari-hinet: image restoration with HINet for napari, Python, the CLI and dask.

The public API is imported lazily so that ``import napari_hinet`` (which napari
does at start-up to read the plugin manifest) does not import torch.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# torch's OpenMP threads busy-wait by default; on a loaded or shared machine (other processes
# on the cores) calls of the Python API then stalled 9-11 s instead of 0.6-0.9 s (issue 15;
# benchmarks/bench_omp_wait.py). OpenMP reads the policy once, when torch first loads it, so it
# is set here, before this package imports torch; a value the user set is kept, and a torch
# imported before this package keeps the policy it started with.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
