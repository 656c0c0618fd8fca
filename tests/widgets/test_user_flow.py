"""The new-user flow: open a sample, dock the widget, click Run with the defaults, get a cleaner image.

Uses the bundled models (skipped while the package ships none for the task).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.gui]

CASES = [  # sample, widget, minimum PSNR gain in dB over the degraded image
    ("noisy_fluorescence", "Denoise", 5.0),
    ("noisy_photo", "Denoise", 5.0),
    ("rainy_photo", "Derain", 3.0),
]


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / mse))


@pytest.mark.parametrize(("sample", "widget_name", "gain"), CASES)
def test_sample_then_run_with_defaults_gives_a_cleaner_layer(
    make_napari_viewer, stop_workers, wait_for, tmp_models_dir, sample, widget_name, gain
) -> None:
    from napari_hinet.registry import list_models

    viewer = make_napari_viewer()
    viewer.open_sample("napari-hinet", sample)
    clean, degraded = viewer.layers[0], viewer.layers[1]
    widget = viewer.window.add_plugin_dock_widget("napari-hinet", widget_name)[1]
    bundled = {m.name for m in list_models(widget._task) if m.kind == "bundled" and m.available}
    if widget.model.value not in bundled:
        pytest.skip(f"no bundled {widget._task} model shipped yet")
    assert widget.image.value is degraded  # the sample's degraded layer is picked by itself
    widget.run_button.changed.emit(True)  # a click on Run, all settings at their defaults
    wait_for(widget, timeout=600_000)
    restored = viewer.layers[f"{degraded.name} (HINet {widget._task})"]
    peak = 255.0 if clean.data.dtype == np.uint8 else float(np.max(clean.data)) - 100.0
    offset = 0.0 if clean.data.dtype == np.uint8 else 100.0  # the fluorescence camera offset
    before = _psnr(degraded.data - offset, clean.data - offset, peak)
    after = _psnr(np.asarray(restored.data) - offset, clean.data - offset, peak)
    assert after > before + gain, f"{sample}: PSNR {before:.2f} -> {after:.2f} dB"
