"""Inference engine: tiled, batched, memory-bounded HINet restoration.

Public API: :func:`restore`, :class:`Restorer`, :func:`get_restorer` (the
per-process model cache), :class:`Cancelled`, :func:`available_devices`,
:func:`is_dask_array`. The seams below them (see docs/architecture.md):
:mod:`.plan` (RunPlan), :mod:`.predictor` (Predictor, the backend seam),
:mod:`.batching` (BatchPolicy), :mod:`.runner` (the one tile loop),
:mod:`.cache`, :mod:`.lazy` (dask). See docs/engine.md.
"""

from ..dask_support import is_dask_array
from .devices import available_devices
from .restore import Cancelled, Restorer, get_restorer, restore

__all__ = ["Cancelled", "Restorer", "available_devices", "get_restorer", "is_dask_array", "restore"]
