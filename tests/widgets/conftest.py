"""Fixtures for the widget tests: isolated settings, tiny models, a wait-for-worker helper."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_widget_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Widget settings go to a temp folder, never to the real user config."""
    folder = tmp_path / "config"
    monkeypatch.setenv("NAPARI_HINET_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def tiny_models(tmp_models_dir: Path) -> dict[str, str]:
    """One tiny random RGB model per task (HINet wf=8, depth=3) in a fresh user models folder.

    Returns ``{task: model name}``. The models restore nothing useful; they make runs fast.
    """
    import torch

    from napari_hinet import HINet, save_model

    names = {}
    for seed, task in enumerate(("denoise", "deblur", "derain")):
        torch.manual_seed(seed)
        name = f"tiny-{task}"
        save_model(
            HINet(in_chn=3, wf=8, depth=3), tmp_models_dir / f"{name}.safetensors", task=task, patch_size=64
        )
        names[task] = name
    return names


@pytest.fixture
def wait_for(qtbot):
    """``wait_for(widget)``: process Qt events until the widget's run has finished (or fail)."""

    def wait(widget, timeout: int = 60_000) -> None:
        qtbot.waitUntil(lambda: not widget.is_running, timeout=timeout)
        qtbot.wait(20)  # let any remaining queued slots run

    return wait
