"""Progress bars of ``napari-hinet restore`` (tqdm): files, tiles of a file, tasks of a lazy file."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..dask_support import dask_progress


class TileBar:
    """``progress(done, total)`` callback drawing a per-file tile bar with tqdm."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="tile", leave=False, position=1)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class DaskBar:
    """A tqdm bar over the tasks of dask computations run with the local scheduler."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self._callback = None

    def __enter__(self) -> DaskBar:
        if not self.enabled:
            return self
        from tqdm.auto import tqdm

        bars: list[Any] = []

        def update(done: int, total: int) -> None:
            if done == 0:
                bars.append(tqdm(total=total, desc=self.name, unit="task", leave=False, position=1))
            else:
                bars[-1].update(1)

        self._callback = dask_progress(update, on_finish=lambda: bars[-1].close() if bars else None)
        self._callback.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._callback is not None:
            self._callback.__exit__(*exc)


def open_files_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="files", unit="file", disable=not enabled, position=0)


def write_line(text: str, progress: bool, out: TextIO) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)
