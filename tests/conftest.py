"""Shared pytest fixtures (keep this file small).

Every test session runs with ``HINET_MODELS_DIR`` pointing at an empty
temporary folder, so tests never see or change the user's real models
folder; use ``tmp_models_dir`` for a fresh folder per test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# torch's OpenMP threads busy-wait by default; on a shared, loaded machine (CI, the
# project's 2-core boxes) that made tiny forward passes take seconds instead of
# milliseconds. Passive waiting keeps multi-threading and removes the stall. This must
# be set before torch is first imported (it is not imported by then here).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: tests/data, reachable from any test file
DATA_DIR = Path(__file__).resolve().parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    folder = tempfile.mkdtemp(prefix="hinet-test-models-")
    config._hinet_models_dir = folder  # type: ignore[attr-defined]
    os.environ["HINET_MODELS_DIR"] = folder
    # OpenVINO's converted/compiled models: a session folder, never the user's cache
    cache = tempfile.mkdtemp(prefix="hinet-test-cache-")
    config._hinet_cache_dir = cache  # type: ignore[attr-defined]
    os.environ["HINET_CACHE_DIR"] = cache


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in ("_hinet_models_dir", "_hinet_cache_dir"):
        folder = getattr(config, name, None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def data_dir() -> Path:
    """The ``tests/data`` folder."""
    return DATA_DIR


@pytest.fixture
def tmp_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty user models folder: ``HINET_MODELS_DIR`` points at it for this test."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("HINET_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def stop_workers(qtbot):
    """Stop napari thread workers after a test, before its widgets are deleted.

    Request it AFTER ``make_napari_viewer`` so that its teardown runs first:
    ``def test_x(make_napari_viewer, stop_workers, qtbot)``.
    """
    yield
    from napari.qt.threading import WorkerBase

    WorkerBase.await_workers(msecs=10_000)  # quit() all workers, join the pool
    qtbot.wait(50)  # deliver queued signals while the widgets still exist
