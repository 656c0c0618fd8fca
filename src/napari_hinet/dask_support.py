"""Dask helpers shared by the engine, the file I/O and the CLI (dask itself is imported lazily).

* :func:`is_dask_array`: the one "is this a dask array?" check;
* :func:`dask_progress`: the one progress/cancel hook for computations on
  dask's local schedulers (used by :func:`napari_hinet.engine.lazy.restore_dask`
  with ``out=`` and by the CLI's progress bar).

This module imports neither torch nor dask at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def is_dask_array(obj: Any) -> bool:
    """True for a dask array (checked without importing dask)."""
    return type(obj).__module__.startswith("dask") and hasattr(obj, "dask") and hasattr(obj, "chunks")


def dask_progress(
    progress: Callable[[int, int], Any] | None = None,
    *,
    before_task: Callable[[], None] | None = None,
    on_finish: Callable[[], None] | None = None,
) -> Any:
    """A ``dask.callbacks.Callback`` (use it as a context manager) reporting tasks as they finish.

    Args:
        progress: ``progress(done, total)`` in tasks: once with ``done=0`` when a
            computation starts, then after every task.
        before_task: called before every task; raising there stops the computation
            (how ``cancel`` is implemented).
        on_finish: called when a computation ends (also after an error).

    Local schedulers only (threads, processes, synchronous); a distributed
    cluster reports progress through its dashboard.
    """
    from dask.callbacks import Callback

    class _Progress(Callback):
        def _start_state(self, dsk: Any, state: Any) -> None:
            self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self.done = 0
            if progress is not None:
                progress(0, self.total)

        def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
            if before_task is not None:
                before_task()

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            self.done += 1
            if progress is not None:
                progress(self.done, self.total)

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            if on_finish is not None:
                on_finish()

    return _Progress()
