"""The Denoise, Deblur and Derain dock widgets (one implementation, parameterised by task).

Layout, top to bottom: image layer, model (+ "Load checkpoint…"), device,
precision, tile size, overlap, tiling, output type, scope, "new layer";
**Run**, **Cancel** and "Preview field of view"; a progress bar with ETA and a
status line (device, megapixels per second).

Runs are non-blocking: the engine runs in a napari generator thread worker that
yields after every tile batch, so **Cancel** takes effect within one batch and
the viewer stays responsive. The output layer, named ``"<input> (HINet
<task>)"``, is added (or replaced) on the main thread when the worker returns;
a cancelled or failed run adds nothing, and the input layer is only read.
Settings are remembered between sessions (see :mod:`._common`).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton, RadioButtons

from .._commands import (
    Region,
    RegionProgress,
    allocate_output,
    as_layer_data,
    check_layer,
    current_plane_region,
    field_of_view_region,
    iter_restore_region,
    layer_axes,
    output_layer_kwargs,
    output_name,
    provenance,
    resolved_tiling,
    restorer_device,
    restorer_metadata,
    restorer_precision,
    source_array,
    whole_region,
)
from ._common import (
    ProgressClock,
    connect_layer_list,
    format_megapixels_rate,
    format_seconds,
    image_layer_choices,
    load_widget_state,
    save_widget_state,
)

if TYPE_CHECKING:
    import napari

#: Value of the model picker's "Load checkpoint…" entry.
LOAD_CHECKPOINT = "__load_checkpoint__"
_TILES = [("auto (model patch size)", 0)] + [(f"{n} px", n) for n in (128, 192, 256, 384, 512, 768, 1024)]
_OVERLAPS = [("auto (tile / 4)", -1)] + [(f"{n} px", n) for n in (0, 16, 32, 48, 64, 96, 128)]
_TILINGS = [
    ("blend (smooth overlap)", "blend"),
    ("official (HINet grids)", "official"),
    ("none (whole plane)", "none"),
]
_OUT_DTYPES = [
    ("auto (8-bit RGB stays 8-bit, else float32)", "auto"),
    ("float32", "float32"),
    ("same as input", "same"),
]
_SCOPES = ["current plane", "whole stack"]
_PROGRESS_STEPS = 1000

#: Every live restore widget, so a newly saved model can be offered at once (see refresh_all_model_lists).
_LIVE_WIDGETS: weakref.WeakSet[RestoreWidget] = weakref.WeakSet()


def refresh_all_model_lists() -> None:
    """Re-read the model registry in every open Denoise/Deblur/Derain widget (e.g. after fine-tuning)."""
    for widget in list(_LIVE_WIDGETS):
        try:
            widget.refresh_models()
        except RuntimeError:  # its Qt widget was closed and deleted
            _LIVE_WIDGETS.discard(widget)


@dataclass
class _RunResult:
    """What the worker hands back to the main thread."""

    data: Any
    model_metadata: dict[str, Any]
    device: str
    precision: str
    seconds: float
    pixels: int
    options: dict[str, Any]
    output_store: str | None


class RestoreWidget(Container):
    """Dock widget restoring an image layer with HINet for one task.

    Args:
        viewer: the napari viewer (napari passes it when docking from the manifest).
        task: ``"denoise"``, ``"deblur"`` or ``"derain"``.

    Scripting/tests: set the pickers' ``.value`` and call :meth:`run` (returns
    the started worker) or :meth:`preview`; :meth:`cancel` stops a run.
    """

    def __init__(self, viewer: napari.viewer.Viewer, task: str) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._task = task
        self._worker: Any = None
        self._restorer: tuple[tuple, Any] | None = None  # (key, Restorer), reused across runs
        self._checkpoints: list[str] = []  # paths added with "Load checkpoint…"
        self._last_model: Any = None
        # True while the model follows the image (gray vs RGB); False once the user picks one
        self._model_auto = True
        self._setting_model = False
        self._clock = ProgressClock()
        self._adding_output = False  # the picker keeps the input when napari selects our new output

        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_info = Label(label="")
        self.device = ComboBox(label="Device", choices=self._device_choices)
        self.precision = ComboBox(label="Precision", choices=["auto", "fp32", "bf16", "fp16"], value="auto")
        self.tile = ComboBox(label="Tile size", choices=_TILES, value=0)
        self.overlap = ComboBox(label="Overlap", choices=_OVERLAPS, value=-1)
        self.tiling = ComboBox(label="Tiling", choices=_TILINGS, value="blend")
        self.out_dtype = ComboBox(label="Output type", choices=_OUT_DTYPES, value="auto")
        self.scope = RadioButtons(
            label="Scope", choices=_SCOPES, value="whole stack", orientation="horizontal"
        )
        self.new_layer = CheckBox(text="Add a new layer (keep earlier results)", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.preview_button = PushButton(text="Preview field of view")
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        self.progress = ProgressBar(label="Progress", min=0, max=_PROGRESS_STEPS, value=0)
        self.progress_text = Label(label="", value="")
        self.status = Label(label="", value="Ready.")
        self.extend(
            [
                self.image,
                self.model,
                self.model_info,
                self.device,
                self.precision,
                self.tile,
                self.overlap,
                self.tiling,
                self.out_dtype,
                self.scope,
                self.new_layer,
                buttons,
                self.preview_button,
                self.progress,
                self.progress_text,
                self.status,
            ]
        )
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QSizePolicy

        for label in (self.model_info, self.progress_text, self.status):
            label.native.setWordWrap(True)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.model_info.native.setOpenExternalLinks(True)

        self._restore_state()
        self.model.changed.connect(self._on_model_changed)
        self.image.changed.connect(self._on_image_changed)
        self.run_button.changed.connect(lambda: self.run())
        self.cancel_button.changed.connect(self.cancel)
        self.preview_button.changed.connect(lambda: self.preview())
        self._disconnect_layers = connect_layer_list(
            viewer, self._on_layers_changed, owner=self.native, on_active=self._on_active_layer
        )
        self._select_active_layer()
        self._describe_model()
        self._on_image_changed(self.image.value)
        _LIVE_WIDGETS.add(self)

    # ------------------------------------------------------------ choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layer_choices(self._viewer)

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_hinet.registry import list_models

        choices: list[tuple[str, str]] = []
        for info in list_models(self._task):
            if info.kind == "official":
                label = f"{info.name} (official{'' if info.available else ', missing'})"
            else:
                label = f"{info.name} ({info.kind})"
            choices.append((label, info.name))
        for path in self._checkpoints:
            choices.append((f"{Path(path).name} (checkpoint)", path))
        choices.append(("Load checkpoint…", LOAD_CHECKPOINT))
        return choices

    def _device_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_hinet.engine.devices import available_devices, describe_device

        devices = available_devices()
        choices = [(f"auto ({devices[0]})", "auto")]
        choices += [(describe_device(d), d) for d in devices]
        return choices

    def refresh_models(self) -> None:
        """Re-read the model registry (a model saved or copied in meanwhile appears, in registry order)."""
        value = self.model.value
        with self.model.changed.blocked():
            self.model.native.clear()  # so the new list keeps the registry's order
            self.model.reset_choices()
            if value in self._model_values():
                self.model.value = value
        self._describe_model()

    # ------------------------------------------------------------ events
    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()

    def _on_active_layer(self, _event: Any = None) -> None:
        if self._worker is None and not self._adding_output:
            self._select_active_layer()

    def _select_active_layer(self) -> None:
        from napari.layers import Image

        active = self._viewer.layers.selection.active
        if isinstance(active, Image) and active in [c[1] for c in self._image_choices()]:
            self.image.value = active

    def _on_image_changed(self, layer: Any) -> None:
        stack = layer is not None and layer.ndim > 2
        self.scope.visible = stack
        if layer is not None and self._worker is None and self._model_auto:
            suggestion = self._suggest_model(layer)
            if suggestion is not None and suggestion != self.model.value:
                self._set_model(suggestion)
        if layer is not None and self._worker is None:
            shape = source_array(layer).shape
            kind = "RGB " if layer.rgb else ""
            lazy = " (multiscale, level 0)" if layer.multiscale else ""
            self.status.value = (
                f"{layer.name}: {kind}{' x '.join(map(str, shape))} {source_array(layer).dtype}{lazy}."
            )

    def _on_model_changed(self, value: Any) -> None:
        if value == LOAD_CHECKPOINT:
            path = self._ask_checkpoint_path()
            if path:
                self.add_checkpoint(path)
            else:  # dialog cancelled: go back to the previous model
                values = self._model_values()
                self.model.value = self._last_model if self._last_model in values else values[0]
            return
        self._last_model = value
        if not self._setting_model:
            self._model_auto = False  # the user chose: stop following the image
        info = self._model_info(value)
        if info is None:
            text = tooltip = f"Checkpoint file {value}" if value else ""
        elif not info.available and info.kind == "official":
            from napari_hinet.registry import user_models_dir

            tooltip = info.missing_message()
            text = (
                f"<b>Missing:</b> download <a href='{info.where_to_get}'>{info.file_name}</a> "
                f"and put it into <code>{user_models_dir()}</code>."
            )
        elif not info.available:
            text = tooltip = "Missing: " + info.missing_message()
        else:
            text = tooltip = info.description or f"{info.kind} model for {info.task}"
        self.model_info.value = text
        self.model_info.tooltip = tooltip

    def _describe_model(self) -> None:
        """Fill the model description for the current model (not counted as the user's choice)."""
        self._setting_model = True
        try:
            self._on_model_changed(self.model.value)
        finally:
            self._setting_model = False

    def _set_model(self, value: Any) -> None:
        """Select a model programmatically (not counted as the user's choice)."""
        self._setting_model = True
        try:
            self.model.value = value
        finally:
            self._setting_model = False

    def _suggest_model(self, layer: Any) -> str | None:
        """The model to use for ``layer`` by default: the task's default if its channels match the
        layer (gray or RGB), else the first available bundled (then any) model that matches."""
        from napari_hinet.registry import list_models

        want = "rgb" if layer.rgb else "gray"
        infos = [m for m in list_models(self._task) if m.available]
        default = self._default_model()
        by_name = {m.name: m for m in infos}
        if default in by_name and by_name[default].channels == want:
            return default
        matching = [m for m in infos if m.channels == want]
        matching.sort(key=lambda m: m.kind != "bundled")
        return matching[0].name if matching else default

    def _model_values(self) -> list[Any]:
        return [c[1] for c in self._model_choices()]

    def _model_info(self, name: Any) -> Any:
        from napari_hinet.registry import list_models

        for info in list_models(self._task):
            if info.name == name:
                return info
        return None

    def _ask_checkpoint_path(self) -> str:
        from qtpy.QtWidgets import QFileDialog

        from napari_hinet.registry import user_models_dir

        path, _ = QFileDialog.getOpenFileName(
            self.native,
            "Load a HINet checkpoint",
            str(user_models_dir()),
            "HINet weights (*.safetensors *.pth *.pt);;All files (*)",
        )
        return path

    def add_checkpoint(self, path: str | Path) -> None:
        """Offer the weights file ``path`` in the model picker and select it."""
        path = str(Path(path).expanduser().resolve())
        if not Path(path).is_file():
            self._fail(f"No checkpoint file at {path}.")
            return
        if path not in self._checkpoints:
            self._checkpoints.append(path)
        self.model.reset_choices()
        self.model.value = path

    # ------------------------------------------------------------ settings
    def settings(self, layer: Any = None) -> Any:
        """The current choices as a :class:`napari_hinet.settings.RestoreSettings`.

        ``layer`` resolves the "auto" output type: an 8-bit RGB image (a photo)
        keeps its dtype, anything else gets float32 (no rounding or clipping).
        """
        from napari_hinet.settings import RestoreSettings

        choice = self.out_dtype.value
        if choice == "auto":
            eight_bit_rgb = layer is not None and layer.rgb and source_array(layer).dtype == "uint8"
            choice = "same" if eight_bit_rgb else "float32"
        model = self.model.value
        return RestoreSettings(
            model=None if model in (None, LOAD_CHECKPOINT) else str(model),
            task=self._task,
            device=self.device.value,
            precision=self.precision.value,
            tile=self.tile.value or None,
            overlap=None if self.overlap.value < 0 else self.overlap.value,
            tiling=self.tiling.value,
            out_dtype=None if choice == "same" else "float32",
        )

    def _save_state(self) -> None:
        state = {
            "settings": self.settings().to_dict(),
            "scope": self.scope.value,
            "new_layer": bool(self.new_layer.value),
            "checkpoints": list(self._checkpoints),
            "model_chosen": not self._model_auto,
            "output_type": self.out_dtype.value,
        }
        save_widget_state(self._task, state)

    def _restore_state(self) -> None:
        state = load_widget_state(self._task)
        self._checkpoints = [p for p in state.get("checkpoints", []) if Path(p).is_file()]
        self.model.reset_choices()
        saved = state.get("settings", {})
        wanted = {
            self.model: saved.get("model") or self._default_model(),
            self.device: saved.get("device"),
            self.precision: saved.get("precision"),
            self.tile: saved.get("tile") or 0,
            self.overlap: -1 if saved.get("overlap") is None else saved.get("overlap"),
            self.tiling: saved.get("tiling"),
            self.out_dtype: state.get("output_type"),
            self.scope: state.get("scope"),
        }
        for widget, value in wanted.items():
            if value is not None and value in [
                c if not isinstance(c, tuple) else c[1] for c in _values(widget)
            ]:
                widget.value = value
        if self.model.value == LOAD_CHECKPOINT:
            self.model.value = self._model_values()[0]
        self.new_layer.value = bool(state.get("new_layer", False))
        self._model_auto = not state.get("model_chosen", False)

    def _default_model(self) -> str | None:
        """The registry's default model for the task, else the first available one, else None."""
        from napari_hinet.registry import default_model, list_models

        try:
            return default_model(self._task)
        except LookupError:
            available = [m.name for m in list_models(self._task) if m.available]
            return available[0] if available else None

    # ------------------------------------------------------------ running
    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def run(self) -> Any:
        """Start restoring the chosen layer (scope: current plane or whole stack).

        Returns the started napari worker, or ``None`` when the inputs are invalid
        (the reason is shown as a notification and in the status line).
        """
        return self._start(preview=False)

    def preview(self) -> Any:
        """Restore only the visible part of the current plane into a "… preview" layer."""
        return self._start(preview=True)

    def cancel(self) -> None:
        """Stop the running job after its current tile batch; no layer is added."""
        if self._worker is not None:
            self.status.value = "Cancelling after the current tile batch…"
            self.cancel_button.enabled = False
            self._worker.quit()

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.value = f"Error: {message}"
        show_error(message)

    def _start(self, preview: bool) -> Any:
        if self._worker is not None:
            return None
        layer = self.image.value
        if layer is None:
            self._fail(
                f"No image layer to {self._task}: open an image (or File > Open Sample > HINet) first."
            )
            return None
        try:
            check_layer(layer)
            settings = self.settings(layer)
            if settings.model is None:
                raise ValueError("Choose a model first.")
            info = self._model_info(settings.model)
            if info is not None and not info.available:
                raise ValueError(info.missing_message())
            region = self._region(layer, preview)
        except ValueError as exc:
            self._fail(str(exc))
            return None
        self._save_state()

        from napari.qt.threading import thread_worker

        options = {
            "tile": settings.tile,
            "overlap": settings.overlap,
            "tiling": settings.tiling,
            "normalization": settings.normalization,
            "out_dtype": settings.out_dtype,
        }
        array = source_array(layer)
        # Our own "errored" handler replaces superqt's default re-raise; it shows the error once.
        worker = thread_worker(self._work, start_thread=False, connect={"errored": self._on_errored})(
            settings, array, layer_axes(layer), region, options
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_returned(result, layer, region, preview))
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.native.destroyed.connect(worker.quit)  # the dock was closed: stop at the next batch
        self._set_running(True)
        self.progress.value = 0
        self.progress_text.value = "Loading the model…"
        what = "field of view" if preview else region.scope
        self.status.value = f"Running {self._task} on {layer.name!r} ({what})…"
        self._clock.start()
        worker.start()
        return worker

    def _region(self, layer: Any, preview: bool) -> Region:
        point = self._viewer.dims.point
        if preview:
            if self._viewer.dims.ndisplay != 2:
                raise ValueError("Preview field of view needs the 2D view; switch the viewer to 2D.")
            return field_of_view_region(layer, point)
        if layer.ndim > 2 and self.scope.value == "current plane":
            return current_plane_region(layer, point)
        return whole_region(layer)

    def _get_restorer(self, settings: Any) -> Any:
        """A Restorer for the chosen model/device/precision, reused while they do not change."""
        from napari_hinet.engine import Restorer

        key = (settings.model, settings.device, settings.precision)
        if self._restorer is None or self._restorer[0] != key:
            self._restorer = None
            self._restorer = (
                key,
                Restorer(settings.model, self._task, device=settings.device, precision=settings.precision),
            )
        return self._restorer[1]

    def _work(self, settings: Any, array: Any, axes: str, region: Region, options: dict) -> Any:
        """Runs in the worker thread: load (or reuse) the model, restore, return the array."""
        restorer = self._get_restorer(settings)
        out, store = allocate_output(array, axes, region, options.get("out_dtype"))
        start = time.perf_counter()
        data = yield from iter_restore_region(restorer, array, axes, region, options, out)
        seconds = time.perf_counter() - start
        n_plane_axes = len(region.planes) + 2
        pixels = 1
        for n in data.shape[:n_plane_axes]:
            pixels *= int(n)
        return _RunResult(
            data=data,
            model_metadata=restorer_metadata(restorer),
            device=restorer_device(restorer),
            precision=restorer_precision(restorer),
            seconds=seconds,
            pixels=pixels,
            options={**options, **resolved_tiling(restorer, data.shape, axes, options)},
            output_store=store,
        )

    def _on_progress(self, step: RegionProgress) -> None:
        self._clock.update(step.fraction * _PROGRESS_STEPS, _PROGRESS_STEPS)
        self.progress.value = int(round(step.fraction * _PROGRESS_STEPS))
        eta = self._clock.eta()
        left = f" · {format_seconds(eta)} left" if eta is not None else ""
        plane = f"plane {step.plane + 1}/{step.planes} · " if step.planes > 1 else ""
        self.progress_text.value = f"{plane}tile batch {step.done}/{step.total}{left}"

    def _on_returned(self, result: _RunResult, layer: Any, region: Region, preview: bool) -> None:
        meta = provenance(
            model_metadata=result.model_metadata,
            task=self._task,
            source_layer=layer.name,
            region=region,
            options=result.options,
            device=result.device,
            precision=result.precision,
            seconds=result.seconds,
            pixels=result.pixels,
            output_store=result.output_store,
        )
        name = output_name(layer.name, self._task, preview)
        kwargs = output_layer_kwargs(layer, region, name, meta)
        self._add_or_replace(as_layer_data(result.data), kwargs, replace=preview or not self.new_layer.value)
        self.progress.value = _PROGRESS_STEPS
        self.progress_text.value = f"Done in {format_seconds(result.seconds)}."
        rate = format_megapixels_rate(result.pixels, result.seconds)
        self.status.value = (
            f"{result.device} · {result.precision} · {rate} · {result.seconds:.1f} s · "
            f"model {result.model_metadata.get('name', '?')}"
        )

    def _add_or_replace(self, data: Any, kwargs: dict, replace: bool) -> Any:
        from napari.layers import Layer

        layers = self._viewer.layers
        new = Layer.create(data, kwargs, "image")
        self._adding_output = True
        try:
            return self._insert_output(layers, new, kwargs["name"], replace)
        finally:
            self._adding_output = False

    @staticmethod
    def _insert_output(layers: Any, new: Any, name: str, replace: bool) -> Any:
        old = next((lay for lay in layers if lay.name == name and "napari_hinet" in lay.metadata), None)
        if replace and old is not None:
            index = layers.index(old)
            layers.remove(old)
            layers.insert(index, new)
        else:
            layers.append(new)
        return new

    def _on_errored(self, exc: BaseException) -> None:
        """The engine's error: a napari notification (with its traceback) and the status line."""
        from napari.utils.notifications import notification_manager

        self.status.value = f"Error: {exc}"
        self.progress_text.value = ""
        self.progress.value = 0
        notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _on_aborted(self) -> None:
        self.status.value = "Cancelled; no layer was added."
        self.progress_text.value = ""
        self.progress.value = 0

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.preview_button.enabled = not running
        self.cancel_button.enabled = running
        for widget in (self.image, self.model, self.device, self.precision, self.tile, self.overlap):
            widget.enabled = not running

    def close_worker(self) -> None:
        """Ask a running worker to stop (used when the widget is closed)."""
        if self._worker is not None:
            self._worker.quit()


def _values(widget: Any) -> list[Any]:
    """The values a categorical widget offers."""
    return list(widget.choices)


# ---------------------------------------------------------------- manifest entry points
# napari passes the viewer to a dock widget *class* whose __init__ asks for it by annotation.
class DenoiseWidget(RestoreWidget):
    """The Denoise dock widget."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "denoise")


class DeblurWidget(RestoreWidget):
    """The Deblur dock widget."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "deblur")


class DerainWidget(RestoreWidget):
    """The Derain dock widget."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "derain")
