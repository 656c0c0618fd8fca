"""Training batches drawn ahead of time in worker processes.

On a GPU the model step of our small models takes a few milliseconds while
degrading a batch on the CPU (motion blur above all: ~9 ms per 192-pixel
patch) takes far longer, so one process leaves the GPU idle. The batch of step
``s`` is a pure function of ``(seed, s)`` (see :mod:`.engine`), so it can be
drawn by any process, in any order, and training stays reproducible.

Rules, applied in this order:

1. The batch of step ``s`` is ``step_batch(source, seed, s, batch_size, patch)``
   (:mod:`.datasets`): bit for bit the batch a run without workers draws.
2. ``workers`` processes each get a copy of the source once, when they start
   (by ``fork`` where the platform has it, so nothing is pickled).
3. Asking for step ``s`` queues the steps ``s .. s + depth - 1`` that are not
   queued yet (``depth`` defaults to twice the number of workers), then waits
   for step ``s``. Batches of earlier steps that were never asked for are dropped.
4. :meth:`BatchPrefetcher.close` stops the workers; a prefetcher is also a
   context manager.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from .datasets import step_batch

__all__ = ["BatchPrefetcher"]

_SOURCE: Any = None  # the worker process's copy of the patch source


def _init_worker(source: Any) -> None:
    global _SOURCE
    _SOURCE = source


def _draw(seed: int, step: int, batch_size: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    return step_batch(_SOURCE, seed, step, batch_size, patch)


class BatchPrefetcher:
    """Batches ``(inputs, targets)``, float32 ``(N, C, P, P)``, of coming steps, drawn in
    ``workers`` processes (>= 1) from ``source`` (a picklable patch source)."""

    def __init__(
        self, source: Any, seed: int, batch_size: int, patch: int, workers: int, depth: int | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers} (0 workers: call step_batch directly)")
        self.seed, self.batch_size, self.patch = int(seed), int(batch_size), int(patch)
        self.depth = int(depth) if depth is not None else 2 * int(workers)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._pool = ProcessPoolExecutor(
            max_workers=int(workers),
            mp_context=mp.get_context(method),
            initializer=_init_worker,
            initargs=(source,),
        )
        self._queued: dict[int, Future] = {}

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``step`` (rule 1); queues the next ``depth`` steps (rule 3)."""
        for s in [s for s in self._queued if s < step]:
            self._queued.pop(s).cancel()
        for s in range(step, step + self.depth):
            if s not in self._queued:
                self._queued[s] = self._pool.submit(_draw, self.seed, s, self.batch_size, self.patch)
        return self._queued.pop(step).result()

    def close(self) -> None:
        for future in self._queued.values():
            future.cancel()
        self._queued.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
