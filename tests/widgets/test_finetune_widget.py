"""The Fine-tune dock widget in a real napari viewer (Xvfb): start, plots, stop, resume, save."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

pytestmark = [pytest.mark.slow, pytest.mark.gui]


@pytest.fixture
def tiny_gray_model(tmp_models_dir):
    """A tiny 1-channel denoising model (HINet wf=8, depth=3) in a fresh user models folder."""
    import torch

    from napari_hinet import HINet, save_model

    torch.manual_seed(0)
    save_model(
        HINet(in_chn=1, wf=8, depth=3),
        tmp_models_dir / "tiny-gray.safetensors",
        task="denoise",
        patch_size=16,
        normalization="percentile",
        channels="gray",
    )
    return "tiny-gray"


def _pair(seed: int = 0, size: int = 80):
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.random((size, size)), 3).astype(np.float32)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = (clean + rng.normal(0, 0.15, clean.shape)).astype(np.float32)
    return noisy, clean


def _setup(viewer, widget, model: str, steps: int, name: str) -> None:
    noisy, clean = _pair()
    viewer.add_image(clean, name="clean")
    viewer.add_image(noisy, name="noisy")
    widget.reset_choices()
    widget.mode.value = "paired"
    widget.layer_a.value = viewer.layers["noisy"]
    widget.layer_b.value = viewer.layers["clean"]
    widget.base_model.value = model
    widget.patch_size.value = 16
    widget.batch_size.value = 2
    widget.steps.value = steps
    widget.val_every.value = 3
    widget.save_name.value = name


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-hinet", name)[1]


def test_finetune_docks_and_shows_the_pickers_of_each_mode(make_napari_viewer, stop_workers, tiny_gray_model):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    assert (widget.start_button.text, widget.stop_button.text, widget.resume_button.text) == (
        "Start",
        "Stop",
        "Resume",
    )
    assert tiny_gray_model in list(widget.base_model.choices)
    widget.mode.value = "synthetic"
    assert _shown(widget.degradation) and not _shown(widget.layer_b)
    assert widget.layer_a.label == "Clean images"
    widget.mode.value = "n2n"
    assert _shown(widget.layer_b) and widget.layer_a.label == "Acquisition 1"
    widget.source.value = "folders"
    assert _shown(widget.folder_a) and _shown(widget.folder_b) and not _shown(widget.layer_a)
    widget.mode.value = "self_supervised"
    assert not _shown(widget.folder_b)


def test_learning_rate_starts_at_the_library_default(make_napari_viewer, stop_workers) -> None:
    """The widget, Python and the CLI fine-tune with the same measured default (1e-4 since
    the wf-24 fluorescence model: 2e-4 made SURE fine-tuning lose 0.34 dB at 20 photons,
    docs/finetuning.md), and the tooltip says which it is."""
    from napari_hinet.training import FinetuneConfig

    widget = _dock(make_napari_viewer(), "Fine-tune")
    assert widget.lr.value == pytest.approx(FinetuneConfig().lr)
    assert f"Default: {FinetuneConfig().lr:.4f}" in widget.lr.tooltip


def _shown(widget) -> bool:
    """Not hidden by the widget (the viewer window itself is not shown in tests)."""
    return not widget.native.isHidden()


def test_training_plots_previews_saves_and_the_model_appears_in_denoise(
    make_napari_viewer, stop_workers, tiny_gray_model, wait_for
):
    viewer = make_napari_viewer()
    denoise = _dock(viewer, "Denoise")
    widget = _dock(viewer, "Fine-tune")
    _setup(viewer, widget, tiny_gray_model, steps=6, name="my-finetuned")
    assert "my-finetuned" not in list(denoise.model.choices)
    widget.start_button.changed.emit(True)
    assert widget.is_running and widget.stop_button.enabled and not widget.start_button.enabled
    for control in (
        widget.layer_a,
        widget.layer_b,
        widget.steps,
        widget.lr,
        widget.val_every,
        widget.save_name,
    ):
        assert not control.enabled, control.label  # nothing that changes the result can change now
    wait_for(widget, timeout=240_000)

    assert [int(x) for x, _ in widget.loss_plot.points] == [1, 2, 3, 4, 5, 6]
    assert [int(x) for x, _ in widget.psnr_plot.points] == [0, 3, 6]  # the starting model, then every 3 steps
    assert widget.preview_strip.shown_step == 6
    result = widget.last_result
    assert result is not None and not result.stopped and result.path.is_file()
    assert result.path.stem == "my-finetuned" and "my-finetuned" in widget.status.value
    # listed at once by the open Denoise widget, and usable there
    assert "my-finetuned" in list(denoise.model.choices)
    denoise.image.value = viewer.layers["noisy"]
    denoise.model.value = "my-finetuned"
    denoise.run()
    wait_for(denoise)
    assert viewer.layers["noisy (HINet denoise)"].metadata["napari_hinet"]["model"] == "my-finetuned"


def test_stop_then_resume_continues_to_the_end(
    make_napari_viewer, stop_workers, tiny_gray_model, wait_for, qtbot
):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    _setup(viewer, widget, tiny_gray_model, steps=30, name="stop-resume")
    widget.start()
    qtbot.waitUntil(lambda: len(widget.loss_plot.points) >= 2, timeout=240_000)
    widget.stop_button.changed.emit(True)
    wait_for(widget, timeout=240_000)
    stopped_at = widget.last_result.steps
    assert widget.last_result.stopped and stopped_at < 30
    assert "Stopped" in widget.status.value
    assert widget.resume_button.enabled and widget.save_button.enabled
    assert not (widget.last_result.path or False)

    widget.resume_button.changed.emit(True)
    wait_for(widget, timeout=240_000)
    assert not widget.last_result.stopped and widget.last_result.steps == 30
    steps = [int(x) for x, _ in widget.loss_plot.points]
    assert steps == list(range(1, 31))  # one curve across the stop
    assert widget.last_result.path.is_file()


def test_closing_the_dock_stops_training(make_napari_viewer, stop_workers, tiny_gray_model, wait_for, qtbot):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-hinet", "Fine-tune")
    _setup(viewer, widget, tiny_gray_model, steps=100_000, name="closed-dock")
    widget.start()
    qtbot.waitUntil(lambda: len(widget.loss_plot.points) >= 1, timeout=240_000)
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    wait_for(widget, timeout=120_000)
    assert widget.last_result is not None and widget.last_result.stopped  # checkpointed, resumable
    assert widget.last_result.steps < 100_000 and not widget.is_running


def test_resume_after_a_restart_picks_up_the_saved_run(
    make_napari_viewer, stop_workers, tiny_gray_model, wait_for, qtbot
):
    viewer = make_napari_viewer()
    first = _dock(viewer, "Fine-tune")
    _setup(viewer, first, tiny_gray_model, steps=20, name="restartable")
    first.start()
    qtbot.waitUntil(lambda: len(first.loss_plot.points) >= 3, timeout=240_000)
    first.stop()
    wait_for(first, timeout=240_000)
    stopped_at = first.last_result.steps

    other = make_napari_viewer()  # "napari was restarted"
    second = _dock(other, "Fine-tune")
    _setup(other, second, tiny_gray_model, steps=20, name="restartable")
    second.resume()
    qtbot.waitUntil(
        lambda: "Resumed at step" in second.status.value or not second.is_running, timeout=240_000
    )
    assert f"Resumed at step {stopped_at}" in second.status.value
    wait_for(second, timeout=240_000)
    assert second.last_result.steps == 20 and not second.last_result.stopped


def test_bad_configuration_is_reported_before_training(
    make_napari_viewer, stop_workers, tiny_gray_model, wait_for
):
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        viewer = make_napari_viewer()
        widget = _dock(viewer, "Fine-tune")
        _setup(viewer, widget, tiny_gray_model, steps=5, name="too-big")
        widget.patch_size.value = 256  # larger than the 80 x 80 images
        widget.start()
        wait_for(widget, timeout=120_000)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    messages = [str(n.message) for n in seen]
    assert any("patch_size" in m for m in messages), messages
    assert "patch_size" in widget.status.value
    assert not widget.loss_plot.points


def test_missing_layers_are_reported_without_starting(make_napari_viewer, stop_workers, tiny_gray_model):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    assert widget.start() is None
    assert "Choose the" in widget.status.value


@pytest.mark.parametrize("case", ["synthetic-layer", "self_supervised-folder", "n2n-folders"])
def test_other_modes_and_folder_sources_train_and_save(
    make_napari_viewer, stop_workers, tiny_gray_model, wait_for, tmp_path, case
):
    import tifffile

    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    _setup(viewer, widget, tiny_gray_model, steps=3, name=f"mode-{case}")
    mode, source = case.split("-")
    widget.mode.value = mode
    if source.startswith("folder"):
        a, b = tmp_path / "a", tmp_path / "b"
        a.mkdir(), b.mkdir()
        for i in range(3):  # pairs are matched by file name; b = a second noisy acquisition
            noisy, clean = _pair(seed=i, size=72)
            second = clean + np.random.default_rng(100 + i).normal(0, 0.15, clean.shape)
            tifffile.imwrite(a / f"img{i}.tif", noisy)
            tifffile.imwrite(b / f"img{i}.tif", second.astype(np.float32))
        widget.source.value = "folders"
        widget.folder_a.value = a
        widget.folder_b.value = b
    else:
        widget.layer_a.value = viewer.layers["clean"]
        widget.degradation.value = "gaussian"
    widget.start()
    wait_for(widget, timeout=240_000)
    assert widget.last_result is not None and widget.last_result.path.is_file(), widget.status.value
    assert len(widget.psnr_plot.points) >= 2
    noisy = mode in ("self_supervised", "n2n")  # validation targets are noisy views: said everywhere
    assert ("noisy" in widget.psnr_plot.title) == noisy
    assert ("noisy" in widget.preview_strip.captions[2].text()) == noisy
    assert ("against noisy views" in widget.status.value) == noisy, widget.status.value


def test_gray_layers_fine_tune_an_rgb_base_model(make_napari_viewer, stop_workers, tiny_models, wait_for):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    _setup(viewer, widget, tiny_models["denoise"], steps=2, name="rgb-base-gray-data")  # a 3-channel model
    widget.start()
    wait_for(widget, timeout=240_000)
    assert widget.last_result is not None and widget.last_result.path.is_file(), widget.status.value


def test_identical_input_and_target_are_refused_and_clean_never_defaults_to_the_input(
    make_napari_viewer, stop_workers, tiny_gray_model, tmp_path
):
    viewer = make_napari_viewer()
    noisy, clean = _pair()
    viewer.add_image(noisy, name="cells (noisy)")
    widget = _dock(viewer, "Fine-tune")
    assert widget.mode.value == "paired"
    assert widget.layer_a.value is viewer.layers["cells (noisy)"]
    assert widget.layer_b.value is None  # no clean layer: no target rather than the degraded layer
    viewer.add_image(clean, name="cells (clean)")
    assert widget.layer_b.value is viewer.layers["cells (clean)"]
    assert widget.layer_a.value is viewer.layers["cells (noisy)"]

    widget.base_model.value = tiny_gray_model
    widget.layer_b.value = widget.layer_a.value  # noise to noise: refused before training
    assert widget.start() is None and not widget.is_running
    assert "same layer" in widget.status.value and "copy its input" in widget.status.value
    viewer.add_image(noisy.copy(), name="copy")
    widget.layer_b.value = viewer.layers["copy"]
    assert widget.start() is None and "equal pixels" in widget.status.value

    folder = tmp_path / "pairs"
    folder.mkdir()
    widget.source.value = "folders"
    widget.folder_a.value = folder
    widget.folder_b.value = folder
    assert widget.start() is None and "same folder" in widget.status.value


def test_time_budget_replaces_the_step_count(make_napari_viewer, stop_workers, tiny_gray_model, wait_for):
    from napari_hinet.checkpoints import load_model

    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    _setup(viewer, widget, tiny_gray_model, steps=100_000, name="budget-run")
    widget.time_budget.value = 4
    widget.start()
    wait_for(widget, timeout=240_000)
    result = widget.last_result
    assert result is not None and not result.stopped and result.path.is_file(), widget.status.value
    training = load_model(result.path).metadata["training"]
    plan = training["time_budget"]
    refit = plan.get("refit", {})
    assert plan["time_budget_s"] == 4 and training["steps"] < 100_000
    assert training["steps"] == (refit["steps"] if refit.get("applied") else plan["steps"]) == result.steps


def test_sure_with_the_camera_noise_trains_and_says_its_validation_is_an_estimate(
    make_napari_viewer, stop_workers, tiny_gray_model, wait_for
):
    from napari_hinet.checkpoints import load_model

    viewer = make_napari_viewer()
    widget = _dock(viewer, "Fine-tune")
    _setup(viewer, widget, tiny_gray_model, steps=3, name="sure-run")
    widget.mode.value = "self_supervised"
    assert _shown(widget.ssl_method) and not _shown(widget.noise_model)  # neighbor needs no noise level
    widget.ssl_method.value = "sure"
    assert _shown(widget.noise_model)
    widget.noise_model.value = "0.01 0.0004, 1"  # three numbers
    assert widget.start() is None
    assert "Noise a, b: type two numbers" in widget.status.value
    widget.noise_model.value = "0, 0.0225"  # the 0.15 Gaussian noise of _pair, in the layer's units
    widget.start()
    wait_for(widget, timeout=240_000)
    result = widget.last_result
    assert result is not None and result.path.is_file(), widget.status.value
    assert widget.psnr_plot.title == "validation PSNR vs clean, estimated (SURE)"
    assert widget.preview_strip.captions[2].text() == "noise variance (SURE)"
    data = load_model(result.path).metadata["training"]["data"]
    assert data["ssl_method"] == "sure" and data["noise_model"] == [0.0, 0.0225]
