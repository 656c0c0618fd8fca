"""The Denoise/Deblur/Derain dock widgets in a real napari viewer (Xvfb).

Run: QT_API=pyqt6 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x1024x24" \
     .venv/bin/python -m pytest tests/widgets -m gui
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.gui]

WIDGETS = {"Denoise": "denoise", "Deblur": "deblur", "Derain": "derain"}
PROVENANCE_KEYS = {
    "model",
    "weights_sha256",
    "tiling",
    "tile",
    "overlap",
    "device",
    "precision",
    "version",
    "time",
}


@pytest.fixture
def notifications():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    seen: list = []

    def record(event) -> None:
        seen.append(event.value if hasattr(event, "value") else event)

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def _dock(viewer, display_name: str):
    _dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-hinet", display_name)
    return widget


def _error_messages(notes) -> list[str]:
    return [str(n.message) for n in notes if str(getattr(n, "severity", "")).lower().endswith("error")]


# ------------------------------------------------------------------ docking and pickers
@pytest.mark.parametrize("display_name", sorted(WIDGETS))
def test_widget_docks_through_the_manifest(
    make_napari_viewer, stop_workers, tiny_models, display_name
) -> None:
    viewer = make_napari_viewer()
    widget = _dock(viewer, display_name)
    task = WIDGETS[display_name]
    assert widget._task == task
    assert widget.run_button.text == "Run" and widget.cancel_button.text == "Cancel"
    assert not widget.cancel_button.enabled
    # the model picker is filtered by task: our tiny model of this task, not the others'
    values = list(widget.model.choices)
    assert tiny_models[task] in values
    assert all(tiny_models[t] not in values for t in WIDGETS.values() if t != task)
    assert values[-1] == "__load_checkpoint__"
    assert "cpu" in widget.device.choices and "auto" in widget.device.choices


def test_image_picker_lists_image_layers_only_and_follows_the_layer_list(
    make_napari_viewer, stop_workers, tiny_models
) -> None:
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    assert widget.image.value is None
    first = viewer.add_image(np.zeros((32, 32), np.float32), name="first")
    viewer.add_labels(np.zeros((32, 32), np.int32), name="labels")
    viewer.add_points([[1, 1]], name="points")
    assert [c.name for c in widget.image.choices] == ["first"]
    second = viewer.add_image(np.zeros((32, 32), np.float32), name="second")
    assert {c.name for c in widget.image.choices} == {"first", "second"}
    assert widget.image.value is second  # follows the selected layer
    viewer.layers.selection.active = first
    assert widget.image.value is first
    viewer.layers.remove(first)
    assert [c.name for c in widget.image.choices] == ["second"]
    assert widget.image.value is second


# ------------------------------------------------------------------ runs
def _inputs():
    rng = np.random.default_rng(0)
    gray = rng.random((40, 56), dtype=np.float32)
    rgb = (rng.random((48, 40, 3)) * 255).astype(np.uint8)
    stack = (rng.random((3, 40, 48)) * 4000).astype(np.uint16)
    lazy = da.from_array(stack, chunks=(1, 40, 48))
    return {
        "gray2d": (gray, {"scale": (0.5, 0.25), "translate": (10.0, -3.0)}),
        "rgb": (rgb, {"rgb": True, "scale": (2.0, 2.0), "translate": (1.0, 1.0)}),
        "zyx_uint16": (stack, {"scale": (3.0, 0.5, 0.5), "translate": (5.0, 0.0, 2.0)}),
        "dask_zyx": (lazy, {"scale": (3.0, 0.5, 0.5), "translate": (0.0, 1.0, 2.0)}),
    }


@pytest.mark.parametrize("kind", sorted(_inputs()))
def test_run_adds_restored_layer_with_geometry_and_provenance(
    make_napari_viewer, stop_workers, tiny_models, wait_for, kind
) -> None:
    data, kwargs = _inputs()[kind]
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, name=kind, **kwargs)
    before = np.array(data)  # a copy, to check the input is not modified
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.scope.value = "whole stack"
    widget.run()
    assert widget.is_running and widget.cancel_button.enabled and not widget.run_button.enabled
    wait_for(widget)

    out = viewer.layers[f"{kind} (HINet denoise)"]
    assert out.data.shape == layer.data.shape
    # output type "auto": an 8-bit RGB photo stays uint8, everything else is float32
    assert out.data.dtype == (np.uint8 if kind == "rgb" else np.float32) and isinstance(out.data, np.ndarray)
    np.testing.assert_allclose(out.scale, layer.scale)
    np.testing.assert_allclose(out.translate, layer.translate)
    assert out.rgb == layer.rgb
    meta = out.metadata["napari_hinet"]
    assert PROVENANCE_KEYS <= set(meta)
    assert meta["model"] == tiny_models["denoise"] and len(meta["weights_sha256"]) == 64
    assert meta["source_layer"] == kind and meta["tile"] == 64
    assert meta["out_dtype"] == str(out.data.dtype)  # the dtype written, also for "same as input" (uint8 RGB)
    np.testing.assert_array_equal(np.asarray(layer.data), before)
    assert "MP/s" in widget.status.value and widget.progress.value == widget.progress.max
    assert widget.image.value is layer  # napari selects the new layer; the picker keeps the input
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_rerun_replaces_the_output_layer_unless_new_layer_is_checked(
    make_napari_viewer, stop_workers, tiny_models, wait_for
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((32, 32), dtype=np.float32), name="img")
    widget = _dock(viewer, "Deblur")
    widget.model.value = tiny_models["deblur"]
    for _ in range(2):
        widget.run()
        wait_for(widget)
    assert [lay.name for lay in viewer.layers] == ["img", "img (HINet deblur)"]
    widget.new_layer.value = True
    widget.run()
    wait_for(widget)
    assert len(viewer.layers) == 3
    assert all("napari_hinet" in lay.metadata for lay in list(viewer.layers)[1:])


def test_current_plane_scope_restores_the_shown_plane_in_place(
    make_napari_viewer, stop_workers, tiny_models, wait_for
) -> None:
    viewer = make_napari_viewer()
    stack = (np.random.default_rng(2).random((4, 32, 40)) * 1000).astype(np.uint16)
    layer = viewer.add_image(stack, name="stack", scale=(2.0, 1.0, 1.0), translate=(10.0, 0.0, 0.0))
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.precision.value = "fp32"
    widget.run()  # whole stack first, for reference
    wait_for(widget)
    full = np.array(viewer.layers["stack (HINet denoise)"].data)

    viewer.dims.set_point(0, 10.0 + 2 * 2.0)  # world z of plane 2
    widget.scope.value = "current plane"
    widget.new_layer.value = True
    widget.run()
    wait_for(widget)
    plane_layer = viewer.layers[-1]
    assert plane_layer.data.shape == (1, 32, 40)
    np.testing.assert_allclose(plane_layer.translate, [14.0, 0.0, 0.0])
    assert plane_layer.metadata["napari_hinet"]["scope"] == "plane"
    np.testing.assert_allclose(plane_layer.data[0], full[2], rtol=1e-4, atol=1e-2)
    assert layer.data is stack


def test_preview_restores_only_the_visible_region(
    make_napari_viewer, stop_workers, tiny_models, wait_for, qtbot
):
    viewer = make_napari_viewer(show=True)  # drawn, so napari tracks the visible region
    image = np.random.default_rng(3).random((400, 400), dtype=np.float32)
    layer = viewer.add_image(image, name="big", translate=(100.0, 50.0))
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (100.0 + 60.0, 50.0 + 80.0)
    camera.zoom = camera.zoom * 6
    qtbot.waitUntil(lambda: layer.corner_pixels[1, 0] - layer.corner_pixels[0, 0] < 300, timeout=5000)
    (y0, x0), (y1, x1) = layer.corner_pixels
    widget.preview()
    wait_for(widget)
    preview = viewer.layers["big (HINet denoise preview)"]
    h, w = preview.data.shape
    assert h < 400 and w < 400
    offset = preview.metadata["napari_hinet"]["region_offset"]
    assert offset == [int(y0), int(x0)]
    np.testing.assert_allclose(preview.translate, [100.0 + y0, 50.0 + x0])
    assert preview.metadata["napari_hinet"]["scope"] == "field of view"


# ------------------------------------------------------------------ cancel and errors
def test_cancel_stops_the_run_and_adds_no_layer(
    make_napari_viewer, stop_workers, tiny_models, wait_for, qtbot
):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(4).random((60, 128, 128), dtype=np.float32)
    viewer.add_image(stack, name="long")
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.tile.value = 128
    worker = widget.run()
    aborted, steps = [], []
    worker.aborted.connect(lambda: aborted.append(True))
    worker.yielded.connect(steps.append)
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=60_000)
    widget.cancel_button.changed.emit(True)  # what a click does
    wait_for(widget)
    assert aborted and worker.abort_requested
    last = steps[-1]
    assert last.plane < last.planes - 1, "the run went on to the end instead of stopping"
    assert widget.progress.value == 0 and "Cancelled" in widget.status.value
    assert [lay.name for lay in viewer.layers] == ["long"]
    # the viewer and the widget stay usable: a new run on a small layer completes
    viewer.add_image(np.zeros((32, 32), np.float32), name="small")
    widget.image.value = viewer.layers["small"]
    widget.run()
    wait_for(widget)
    assert "small (HINet denoise)" in viewer.layers


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (np.arange(32 * 32, dtype=np.int32).reshape(32, 32) % 5, "looks like a label image"),
        (np.zeros((32, 32), dtype=bool), "boolean mask"),
    ],
)
def test_bad_input_shows_an_error_notification(
    make_napari_viewer, stop_workers, tiny_models, notifications, data, expected
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(data, name="bad")
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    assert widget.run() is None
    assert any(expected in m for m in _error_messages(notifications))
    assert expected in widget.status.value
    assert [lay.name for lay in viewer.layers] == ["bad"]


def test_engine_error_during_a_run_is_notified_with_its_message(
    make_napari_viewer, stop_workers, tiny_models, notifications, wait_for
) -> None:
    viewer = make_napari_viewer()
    data = np.ones((32, 32), np.float32)
    data[3, 4] = np.nan
    viewer.add_image(data, name="nan")
    widget = _dock(viewer, "Derain")
    widget.model.value = tiny_models["derain"]
    widget.run()
    wait_for(widget)
    assert sum("NaN" in m for m in _error_messages(notifications)) == 1  # shown once, not twice
    assert "NaN" in widget.status.value
    assert [lay.name for lay in viewer.layers] == ["nan"]


def test_missing_official_model_explains_where_to_get_it(
    make_napari_viewer, stop_workers, tiny_models, notifications
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = _dock(viewer, "Deblur")
    widget.model.value = "HINet-GoPro"
    assert "HINet-GoPro.pth" in widget.model_info.value and "drive.google.com" in widget.model_info.value
    assert widget.run() is None
    assert any("HINet-GoPro.pth" in m for m in _error_messages(notifications))


# ------------------------------------------------------------------ models and settings
def test_load_checkpoint_adds_the_file_to_the_model_list(
    make_napari_viewer, stop_workers, tiny_models, tmp_path, wait_for
) -> None:
    import torch

    from napari_hinet import HINet, save_model

    torch.manual_seed(7)
    path = save_model(
        HINet(in_chn=3, wf=8, depth=3), tmp_path / "elsewhere" / "mine.safetensors", task="denoise"
    )
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = _dock(viewer, "Denoise")
    widget.add_checkpoint(path)
    assert widget.model.value == str(path.resolve())
    widget.run()
    wait_for(widget)
    assert viewer.layers["img (HINet denoise)"].metadata["napari_hinet"]["model"] == "mine"


def test_settings_persist_between_sessions(make_napari_viewer, stop_workers, tiny_models, wait_for) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.tile.value = 128
    widget.overlap.value = 16
    widget.tiling.value = "official"
    widget.precision.value = "fp32"
    widget.out_dtype.value = "same"
    widget.ensemble.value = True
    widget.run()
    wait_for(widget)
    assert viewer.layers["img (HINet denoise)"].metadata["napari_hinet"]["ensemble"] == 8  # denoise: 8 views

    other = make_napari_viewer()
    again = _dock(other, "Denoise")
    assert again.model.value == tiny_models["denoise"]
    assert (again.tile.value, again.overlap.value, again.tiling.value) == (128, 16, "official")
    assert (again.precision.value, again.out_dtype.value, again.ensemble.value) == ("fp32", "same", True)
    deblur = _dock(other, "Deblur")  # settings are per task
    assert deblur.tile.value == 0 and deblur.ensemble.value is False
    again.reset_to_defaults()
    assert again.ensemble.value is False


def test_sample_data_opens(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    for key in ("noisy_fluorescence", "noisy_photo", "blurred_photo", "rainy_photo"):
        viewer.open_sample("napari-hinet", key)
    assert len(viewer.layers) == 8
    assert viewer.layers["nuclei (noisy)"].data.dtype == np.uint16
    assert viewer.layers["cat (noisy)"].rgb


def test_multiscale_layer_is_restored_at_full_resolution(
    make_napari_viewer, stop_workers, tiny_models, wait_for
) -> None:
    viewer = make_napari_viewer()
    level0 = np.random.default_rng(5).random((96, 80), dtype=np.float32)
    pyramid = [da.from_array(level0, chunks=32), da.from_array(level0[::2, ::2], chunks=32)]
    layer = viewer.add_image(pyramid, multiscale=True, name="pyramid", scale=(0.5, 0.5))
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.run()
    wait_for(widget)
    out = viewer.layers["pyramid (HINet denoise)"]
    assert not out.multiscale and out.data.shape == (96, 80)
    np.testing.assert_allclose(out.scale, layer.scale)


def test_layers_filter_menu_entries_dock_the_widgets(make_napari_viewer, stop_workers, tiny_models) -> None:
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    app = get_app_model()
    ids = [item.command.id for item in app.menus.get_menu("napari/layers/filter") if hasattr(item, "command")]
    for task in WIDGETS.values():
        command = f"napari-hinet.make_{task}_widget"
        assert command in ids
        app.commands.execute_command(command).result()
    from napari_hinet._widgets.restore_widget import RestoreWidget

    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, RestoreWidget)]
    assert sorted(w._task for w in docked) == sorted(WIDGETS.values())


def test_large_dask_stack_output_is_written_to_disk_and_shown_lazily(
    make_napari_viewer, stop_workers, tiny_models, wait_for, tmp_path, monkeypatch
) -> None:
    from napari_hinet import layers

    monkeypatch.setenv(layers.ZARR_OUTPUT_BYTES_ENV, "1")
    monkeypatch.setenv(layers.OUTPUT_DIR_ENV, str(tmp_path / "outputs"))
    viewer = make_napari_viewer()
    stack = (np.random.default_rng(6).random((3, 40, 48)) * 4000).astype(np.uint16)
    viewer.add_image(da.from_array(stack, chunks=(1, 40, 48)), name="lazy")
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.run()
    wait_for(widget)
    out = viewer.layers["lazy (HINet denoise)"]
    assert isinstance(out.data, da.Array) and out.data.shape == stack.shape
    assert (tmp_path / "outputs").is_dir() and out.metadata["napari_hinet"]["output_store"]
    assert np.isfinite(np.asarray(out.data[1])).all()


def test_model_follows_gray_or_rgb_image_until_the_user_picks_one(
    make_napari_viewer, stop_workers, tiny_models, tmp_models_dir
) -> None:
    import torch

    from napari_hinet import HINet, save_model

    torch.manual_seed(3)
    save_model(HINet(in_chn=1, wf=8, depth=3), tmp_models_dir / "tiny-gray.safetensors", task="denoise")
    from napari_hinet.registry import list_models

    channels = {m.name: m.channels for m in list_models("denoise")}
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    viewer.add_image(np.zeros((32, 32), np.uint16), name="gray")
    assert channels[widget.model.value] == "gray"  # tiny-gray, or a bundled gray model when shipped
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True)
    assert channels[widget.model.value] == "rgb"
    widget.model.value = "tiny-gray"  # the user's choice sticks
    viewer.layers.selection.active = viewer.layers["gray"]
    viewer.layers.selection.active = viewer.layers["rgb"]
    assert widget.image.value is viewer.layers["rgb"] and widget.model.value == "tiny-gray"


# ------------------------------------------------------------------ widgets v2 (issue 14)
def test_plane_output_has_its_own_name_and_never_replaces_the_stack_result(
    make_napari_viewer, stop_workers, tiny_models, wait_for
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(8).random((2, 32, 32), dtype=np.float32), name="st")
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    assert not widget.new_layer.value  # the default: a rerun replaces its own earlier result
    widget.run()
    wait_for(widget)
    viewer.dims.set_point(0, 1)
    widget.scope.value = "current plane"
    for _ in range(2):  # the second plane run replaces the first plane run, not the stack
        widget.run()
        wait_for(widget)
    names = [lay.name for lay in viewer.layers]
    assert names == ["st", "st (HINet denoise)", "st (HINet denoise) [z=1]"], names
    assert viewer.layers["st (HINet denoise)"].data.shape == (2, 32, 32)
    assert viewer.layers["st (HINet denoise) [z=1]"].data.shape == (1, 32, 32)
    # a layer of the output's name but another shape (e.g. renamed by the user) is never replaced
    viewer.layers["st (HINet denoise) [z=1]"].name = "st (HINet denoise)"
    kept = viewer.layers[-1]
    widget.run()
    wait_for(widget)
    assert kept in viewer.layers and len(viewer.layers) == 4


def test_a_file_that_is_not_a_model_is_refused_and_not_remembered(
    make_napari_viewer, stop_workers, tiny_models, tmp_path, isolated_widget_settings
) -> None:
    import torch

    from napari_hinet import HINet, save_model

    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    fake = tmp_path / "fake.pth"
    fake.write_text("not weights either\n")
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    before = widget.model.value
    for path in (text, fake):
        assert widget.add_checkpoint(path) is False
        assert path.name in widget.status.value and "Expected HINet weights" in widget.status.value
        assert str(path) not in list(widget.model.choices) and widget.model.value == before
    saved = (
        (isolated_widget_settings / "widgets.json").read_text()
        if (isolated_widget_settings / "widgets.json").exists()
        else ""
    )
    assert "notes.txt" not in saved and "fake.pth" not in saved
    # a real checkpoint is added, selected, and "Load checkpoint…" stays last
    torch.manual_seed(9)
    good = save_model(HINet(in_chn=3, wf=8, depth=3), tmp_path / "good.safetensors", task="denoise")
    assert widget.add_checkpoint(good)
    values = list(widget.model.choices)
    assert widget.model.value == str(good.resolve()) and values[-1] == "__load_checkpoint__"
    assert values.count(str(good.resolve())) == 1


def test_denoise_and_finetune_docks_scroll_on_a_laptop_window(
    make_napari_viewer, stop_workers, qtbot
) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    docks = [
        viewer.window.add_plugin_dock_widget("napari-hinet", name)[0] for name in ("Denoise", "Fine-tune")
    ]
    qtbot.wait(300)
    for dock in docks:
        assert dock.minimumSizeHint().height() <= 600, (dock.name, dock.minimumSizeHint())
    window = viewer.window._qt_window
    assert window.height() <= 800, window.height()
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.height() >= 400, canvas.height()  # the canvas stays usable
    assert viewer.window._qt_viewer.canvas.native.width() >= 400


def test_controls_have_tooltips_and_model_cards_from_metadata(make_napari_viewer, stop_workers) -> None:
    from magicgui.widgets import Label, ProgressBar
    from magicgui.widgets.bases import ButtonWidget, ValueWidget

    viewer = make_napari_viewer()
    for name in ("Denoise", "Fine-tune"):
        widget = _dock(viewer, name)
        controls = [
            w
            for w in _all_widgets(widget)
            if isinstance(w, (ValueWidget, ButtonWidget)) and not isinstance(w, (Label, ProgressBar))
        ]
        assert len(controls) >= 15
        for control in controls:
            tip = control.tooltip or ""
            assert tip, f"{name}: {control.label or control.text} has no tooltip"
            if not isinstance(control, ButtonWidget) or control.label:  # a value: its default is named
                assert "Default" in tip, (name, control.label, tip)
    denoise = _dock(viewer, "Denoise")
    denoise.model.value = "hinet-denoise-fluo"
    card = denoise.model_info.value
    for word in ("Gray", "microscopy", "Poisson-Gaussian", "dB", "M weights"):
        assert word in card, card


def _all_widgets(container):
    from magicgui.widgets import Container

    for widget in container:
        if isinstance(widget, Container):
            yield from _all_widgets(widget)
        else:
            yield widget


def test_model_choice_is_shown_reset_and_settings_saved_on_change(
    make_napari_viewer, stop_workers, tiny_models
) -> None:
    from napari_hinet._widgets._common import load_widget_state

    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    automatic = widget.model.value
    assert widget.model_source.value.startswith("Automatic") and "RGB" in widget.model_source.value
    widget.model.value = "hinet-denoise-fluo"  # the user's choice: a gray model on an RGB photo
    assert widget.model_source.value.startswith("Chosen by you") and automatic in widget.model_source.value
    widget.tile.value = 128  # saved at once, no Run needed
    state = load_widget_state("denoise")
    assert state["settings"]["tile"] == 128 and state["model_chosen"]
    widget.reset_button.changed.emit(True)
    assert widget.model.value == automatic and widget.tile.value == 0
    assert widget.model_source.value.startswith("Automatic")
    state = load_widget_state("denoise")
    assert state["settings"]["tile"] is None and not state["model_chosen"]

    # a choice remembered from an earlier session is used for images it fits, never silently for others
    widget.model.value = "hinet-denoise-fluo"  # a gray model, chosen by the user
    later = make_napari_viewer()  # the next session
    again = _dock(later, "Denoise")
    later.add_image(np.zeros((32, 32), np.uint16), name="gray")
    assert again.model.value == "hinet-denoise-fluo" and again.model_source.value.startswith("Chosen by you")
    later.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    assert again.model.value == automatic
    assert "earlier session" in again.model_source.value and "hinet-denoise-fluo" in again.model_source.value


def test_controls_are_locked_while_running_and_closing_the_dock_cancels(
    make_napari_viewer, stop_workers, tiny_models, qtbot
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(10).random((40, 128, 128), dtype=np.float32), name="long")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-hinet", "Denoise")
    viewer.add_image(np.zeros((16, 16), np.float32), name="small")  # napari refreshes the pickers
    widget.image.value = viewer.layers["long"]
    widget.model.value = tiny_models["denoise"]
    widget.tile.value = 128
    worker = widget.run()
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    for control in (
        widget.image,
        widget.model,
        widget.device,
        widget.precision,
        widget.tile,
        widget.overlap,
        widget.tiling,
        widget.out_dtype,
        widget.scope,
        widget.new_layer,
        widget.preview_button,
        widget.reset_button,
        widget.source,
    ):
        assert not control.enabled, control.label or control.text
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=60_000)
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    qtbot.wait(200)
    assert worker.abort_requested and not widget.is_running and widget._restorer is None
    assert [lay.name for lay in viewer.layers] == ["long", "small"]
    from qtpy.QtWidgets import QApplication, QMainWindow

    strays = [w for w in QApplication.topLevelWidgets() if w.isVisible() and not isinstance(w, QMainWindow)]
    assert not strays, strays  # no piece of the closed dock is left on screen


def test_files_mode_restores_a_folder_like_the_cli(
    make_napari_viewer, stop_workers, tiny_models, wait_for, tmp_path
) -> None:
    import tifffile

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(11)
    for k in range(2):
        tifffile.imwrite(inputs / f"img{k}.tif", (rng.random((24, 32)) * 1000).astype(np.uint16))
    (inputs / "broken.tif").write_bytes(b"not a tiff")
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.source.value = "files"
    assert not _shown(widget.image) and _shown(widget.input_folder) and _shown(widget.skip_existing)
    widget.input_folder.value = inputs
    assert widget.output_folder.value == inputs / "restored"
    widget.run_button.changed.emit(True)
    assert not widget.input_folder.enabled
    wait_for(widget)
    outcome = widget.files_outcome
    assert len(outcome.done) == 2 and len(outcome.failed) == 1, widget.status.value
    assert widget.status.value.startswith("Restored 2, skipped 0 (output exists), failed 1")
    assert "broken.tif" in widget.status.value
    written = tifffile.imread(inputs / "restored" / "img0.tif")
    assert written.shape == (24, 32) and written.dtype == np.uint16  # the CLI's default: the input's dtype
    first = viewer.layers[-1]  # the first result opens as a layer
    assert first.name == "img0.tif (HINet denoise)" and first.data.shape == (24, 32)
    widget.run()  # again: the existing outputs are skipped
    wait_for(widget)
    assert widget.status.value.startswith("Restored 0, skipped 2"), widget.status.value


def test_files_mode_cancel_stops_inside_a_file_and_says_what_is_left(
    make_napari_viewer, stop_workers, tiny_models, wait_for, tmp_path
) -> None:
    import tifffile

    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(3):
        tifffile.imwrite(inputs / f"big{k}.tif", np.zeros((24, 512, 512), np.float32))  # 24 planes each
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    widget.tile.value = 128
    widget.source.value = "files"
    widget.input_folder.value = inputs
    widget.run()
    widget.cancel_button.changed.emit(True)
    wait_for(widget)
    assert "cancelled" in widget.status.value and "not done" in widget.status.value, widget.status.value
    assert not list((inputs / "restored").glob("*.tif"))  # a stopped file leaves no output
    assert len(viewer.layers) == 0 and widget.run_button.enabled


def _shown(widget) -> bool:
    return not widget.native.isHidden()


def test_compare_shows_input_result_and_clean_twin_side_by_side(
    make_napari_viewer, stop_workers, tiny_models, wait_for
) -> None:
    viewer = make_napari_viewer()
    rng = np.random.default_rng(12)
    clean = viewer.add_image(rng.random((32, 32), dtype=np.float32), name="cell (clean)", visible=False)
    noisy = viewer.add_image(rng.random((32, 32), dtype=np.float32), name="cell (noisy)")
    widget = _dock(viewer, "Denoise")
    widget.model.value = tiny_models["denoise"]
    assert widget.compare() is False and "first" in widget.status.value  # nothing to compare yet
    widget.run()
    wait_for(widget)
    result = viewer.layers["cell (noisy) (HINet denoise)"]
    assert widget.compare() is True
    grid = viewer.canvas.grid
    assert grid.enabled and tuple(grid.shape) == (1, 3)
    cells = {grid.position(viewer.layers.index(lay), viewer.layers): lay.name for lay in viewer.layers}
    assert [cells[(0, c)] for c in range(3)] == [noisy.name, result.name, clean.name]
    assert widget.compare() is False  # back as it was
    assert not grid.enabled and not clean.visible and noisy.visible


def test_files_mode_uses_the_task_default_while_the_model_is_automatic(make_napari_viewer) -> None:
    """In Files… mode no layer drives the automatic model: it is the task's default, as the label says.

    Before, the model that had followed an RGB layer stayed (hinet-denoise-photo for a folder of
    fluorescence images) while the label said "the denoise default for this task".
    """
    from napari_hinet.registry import preferred_model

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), rgb=True, name="photo")
    widget = _dock(viewer, "Denoise")
    photo_model = widget.model.value
    assert photo_model != preferred_model("denoise")  # an RGB layer gets the RGB model
    widget.source.value = "files"
    assert widget.model.value == preferred_model("denoise")
    assert "default for this task" in widget.model_source.value
    widget.source.value = "layer"  # back to the layer: the model follows it again
    assert widget.model.value == photo_model
