"""Inference engine: tiled, batched, memory-bounded HINet restoration.

Public API: :func:`restore`, :class:`Restorer`, :class:`Cancelled`,
:func:`available_devices`. See docs/engine.md.
"""

from .devices import available_devices
from .restore import Cancelled, Restorer, is_dask_array, restore

__all__ = ["Cancelled", "Restorer", "available_devices", "is_dask_array", "restore"]
