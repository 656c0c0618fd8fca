"""The Denoise, Deblur and Derain dock widgets (one implementation, parameterised by task).

Layout, top to bottom: image layer, model (+ "Load checkpoint…"), device,
precision, tile size, overlap, tiling, self-ensemble, output type, scope, "new layer";
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

import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    RadioButtons,
)

from ..layers import (
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
    run_record,
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
    model_card_text,
    save_widget_state,
    scrollable_container_class,
)
from ._export import EXPORT_MODEL, ask_export, start_export

if TYPE_CHECKING:
    import napari

#: Value of the model picker's "Load checkpoint…" entry.
LOAD_CHECKPOINT = "__load_checkpoint__"
_TILES = [("auto (model patch size)", 0)] + [(f"{n} px", n) for n in (128, 192, 256, 384, 512, 768, 1024)]
_OVERLAPS = [("auto (tile / 8, at least 16 px)", -1)] + [(f"{n} px", n) for n in (0, 16, 32, 48, 64, 96, 128)]
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
_SOURCES = ["layer", "files"]
_PROGRESS_STEPS = 1000
_CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".zip")  # .zip: bioimage.io package

#: Tooltips: what the control does, its default, when to change it.
TOOLTIPS = {
    "source": "Restore an image layer, or every image file of a folder (like `napari-hinet restore`).\n"
    "Default: layer. Choose files for a batch of images on disk.",
    "image": "The image layer to restore; it is only read, never changed.\n"
    "Default: the selected image layer (the picker follows your selection).",
    "model": "The network that restores the image. Bundled models ship with the plugin; official ones are the "
    "HINet authors' checkpoints (download them); user models are yours (Fine-tune).\n"
    "Default: chosen automatically for the image (gray or RGB) and the task. Change it to try another model; "
    "Reset to defaults goes back to the automatic choice.",
    "model_source": "Whether the model follows the image (automatic) or is your own choice.",
    "device": "Where the network runs. Default: auto (a CUDA GPU, then Apple MPS, then the CPU).\n"
    "Change it to force the CPU (e.g. the GPU is busy) or to pick one of several GPUs.",
    "precision": "Number format of the computation. Default: auto (bf16 on GPUs and CPUs that support it, "
    "else fp32).\nChoose fp32 for exact, reproducible results; fp16 only on a GPU, to save memory.",
    "tile": "Edge of the square tiles the image is cut into. Default: auto (the model's training patch size).\n"
    "Smaller tiles use less memory (choose them if you run out of memory); larger ones are a little faster.",
    "overlap": "How much neighbouring tiles overlap. Default: auto (a quarter of tiles up to 64 px, an eighth of\n"
    "larger ones, at least 16 px).\n"
    "Increase it if you see seams between tiles; 0 is fastest.",
    "tiling": "How tiles are merged. Default: blend (overlapping tiles merged with a smooth window, no seams).\n"
    "official: the HINet paper's test grids (to compare with published numbers); none: whole planes "
    "(needs much memory).",
    "ensemble": "Restore every tile in several orientations (8 rotations and flips; 4 flips for deraining) and "
    "average them.\nA little better (about +0.1 to +0.3 dB on our test images) for 4-8x the time. Default: off.",
    "out_dtype": "Data type of the result. Default: auto (8-bit RGB photos stay 8-bit, everything else "
    "becomes float32, not rounded or clipped; in files mode each file keeps its type, as "
    "`napari-hinet restore` does).\nChoose same as input to keep e.g. uint16 (rounded and clipped), "
    "float32 to keep every restored value.",
    "scope": "For stacks (Z, T, ...): restore the plane shown by the sliders, or every plane.\n"
    "Default: whole stack. Choose current plane for a quick look at one plane.",
    "new_layer": "Unchecked: running again on the same input replaces its earlier result (same shape only).\n"
    "Checked: every run adds a new layer. Default: unchecked.",
    "run_button": "Start restoring (the viewer stays usable; Cancel stops it).",
    "cancel_button": "Stop the run after the current batch of tiles; no layer is added.",
    "preview_button": "Restore only the part of the current plane you see (zoom in first) into a "
    "'... preview' layer: a quick check of a model or tile settings.",
    "compare_button": "Show input | result (| clean twin, if the input has a '(clean)' layer) side by side "
    "in napari's grid view, with linked zoom and pan. Click again to leave the grid view.",
    "reset_button": "Restore every setting of this widget to its default, including the automatic model "
    "choice.",
    "input_folder": "Folder whose images are restored (tif, png, jpg, zarr...; sub-folders are not "
    "searched).\nDefault: none.",
    "output_folder": "Folder the results are written to, with the same file names. Default: a "
    "'restored' folder inside the input folder.",
    "skip_existing": "Checked: outputs that exist already are kept and their inputs skipped (resume a "
    "batch).\nUnchecked: they are replaced. Default: checked.",
    "progress": "Fraction done, with the time left.",
    "status": "What happened last: device, speed and model after a run, or the error and how to fix it.",
}

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


class RestoreWidget(scrollable_container_class()):
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
        self._restorer: Any = None  # the Restorer in use (from the shared per-process cache)
        self._checkpoints: list[str] = []  # paths added with "Load checkpoint…"
        self._last_model: Any = None
        # True while the model follows the image (gray vs RGB); False once the user picks one
        self._model_auto = True
        # the user's choice came from an earlier session (not made in this one): it gives way to the
        # automatic choice for an image it does not fit (gray vs RGB), and the line under the picker says so
        self._remembered_choice = False
        self._model_note = ""
        self._setting_model = False
        self._clock = ProgressClock()
        self._adding_output = False  # the picker keeps the input when napari selects our new output
        self._loading_state = True  # no saving while the saved settings are being applied
        self._closed = False  # the dock was removed: never add a layer any more
        self._grid_before: tuple | None = None  # grid settings to restore after Compare
        self._cancel_event = threading.Event()  # cancels a folder run inside a file
        self._files_run = False  # the running worker restores a folder

        self.source = RadioButtons(label="Restore", choices=_SOURCES, value="layer", orientation="horizontal")
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.input_folder = FileEdit(label="Input folder", mode="d")
        self.output_folder = FileEdit(label="Output folder", mode="d")
        self.skip_existing = CheckBox(text="Skip existing outputs", value=True)
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_source = Label(label="", value="")
        self.model_info = Label(label="")
        self.device = ComboBox(label="Device", choices=self._device_choices)
        self.precision = ComboBox(label="Precision", choices=["auto", "fp32", "bf16", "fp16"], value="auto")
        self.tile = ComboBox(label="Tile size", choices=_TILES, value=0)
        self.overlap = ComboBox(label="Overlap", choices=_OVERLAPS, value=-1)
        self.tiling = ComboBox(label="Tiling", choices=_TILINGS, value="blend")
        self.ensemble = CheckBox(text="Self-ensemble (best quality, 4-8x slower)", value=False)
        self.out_dtype = ComboBox(label="Output type", choices=_OUT_DTYPES, value="auto")
        self.scope = RadioButtons(
            label="Scope", choices=_SCOPES, value="whole stack", orientation="horizontal"
        )
        self.new_layer = CheckBox(text="Add a new layer (keep earlier results)", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.preview_button = PushButton(text="Preview field of view")
        self.compare_button = PushButton(text="Compare")
        self.reset_button = PushButton(text="Reset to defaults")
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        more = Container(
            widgets=[self.preview_button, self.compare_button, self.reset_button],
            layout="horizontal",
            labels=False,
        )
        self.progress = ProgressBar(label="Progress", min=0, max=_PROGRESS_STEPS, value=0)
        self.progress_text = Label(label="", value="")
        self.status = Label(label="", value="Ready.")
        self.extend(
            [
                self.source,
                self.image,
                self.input_folder,
                self.output_folder,
                self.skip_existing,
                self.model,
                self.model_source,
                self.model_info,
                self.device,
                self.precision,
                self.tile,
                self.overlap,
                self.tiling,
                self.ensemble,
                self.out_dtype,
                self.scope,
                self.new_layer,
                buttons,
                more,
                self.progress,
                self.progress_text,
                self.status,
            ]
        )
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QSizePolicy

        for label in (self.model_source, self.model_info, self.progress_text, self.status):
            label.native.setWordWrap(True)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.model_info.native.setOpenExternalLinks(True)
        for name, text in TOOLTIPS.items():
            getattr(self, name).tooltip = text

        self._restore_state()
        self.model.changed.connect(self._on_model_changed)
        self.image.changed.connect(self._on_image_changed)
        self.source.changed.connect(self._update_visibility)
        self.input_folder.changed.connect(self._on_input_folder)
        self.run_button.changed.connect(lambda: self.run())
        self.cancel_button.changed.connect(self.cancel)
        self.preview_button.changed.connect(lambda: self.preview())
        self.compare_button.changed.connect(lambda: self.compare())
        self.reset_button.changed.connect(lambda: self.reset_to_defaults())
        for widget in self._saved_controls():
            widget.changed.connect(self._save_state)
        self._disconnect_layers = connect_layer_list(
            viewer, self._on_layers_changed, owner=self.native, on_active=self._on_active_layer
        )
        self._select_active_layer()
        self._describe_model()
        self._on_image_changed(self.image.value)
        self._update_visibility()
        self._loading_state = False
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
        choices.append(("Export…", EXPORT_MODEL))  # an action on the selected model
        choices.append(("Load checkpoint…", LOAD_CHECKPOINT))
        return choices

    def _device_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_hinet.engine.devices import available_devices, describe_device

        devices = available_devices()
        choices = [(f"auto ({devices[0]})", "auto")]
        choices += [(describe_device(d), d) for d in devices]
        return choices

    def refresh_models(self, select: Any = None) -> None:
        """Re-read the model registry (a model saved or copied in meanwhile appears, in registry order,
        with "Load checkpoint…" last); keep the current model, or select ``select``."""
        value = self.model.value if select is None else select
        with self.model.changed.blocked():
            self.model.native.clear()  # so the new list keeps the registry's order
            self.model.reset_choices()
            if value in self._model_values():
                self.model.value = value
        self._last_model = self.model.value
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

    def _update_visibility(self, _value: Any = None) -> None:
        files = self.source.value == "files"
        self.image.visible = not files
        for widget in (self.input_folder, self.output_folder, self.skip_existing):
            widget.visible = files
        layer = self.image.value
        self.scope.visible = not files and layer is not None and layer.ndim > 2
        self.new_layer.visible = self.preview_button.visible = self.compare_button.visible = not files
        if self._model_auto and self._worker is None:  # the automatic model follows the source too
            auto = (
                self._default_model()
                if files
                else (self._suggest_model(layer) if layer is not None else None)
            )
            if auto is not None and auto != self.model.value:
                self._set_model(auto)
        self._update_model_source()

    def _on_input_folder(self, value: Any) -> None:
        """Propose ``<input>/restored`` as the output folder while none is chosen."""
        folder = Path(str(value))
        if str(value) in ("", ".") or not folder.is_dir():
            return
        if str(self.output_folder.value) in ("", "."):
            self.output_folder.value = folder / "restored"

    def _on_image_changed(self, layer: Any) -> None:
        stack = layer is not None and layer.ndim > 2
        self.scope.visible = stack and self.source.value == "layer"
        if layer is not None and self._worker is None and not self._model_auto and self._remembered_choice:
            info = self._model_info(self.model.value)
            kind = "rgb" if layer.rgb else "gray"
            if info is not None and info.channels != kind:
                self._model_auto = True
                self._remembered_choice = False
                self._model_note = (
                    f" Your model from an earlier session, {info.name}, is for {info.channels} images: "
                    f"not used for this {'RGB' if layer.rgb else 'gray'} image."
                )
        if layer is not None and self._worker is None and self._model_auto:
            suggestion = self._suggest_model(layer)
            if suggestion is not None and suggestion != self.model.value:
                self._set_model(suggestion)
        self._update_model_source()
        if layer is not None and self._worker is None:
            shape = source_array(layer).shape
            kind = "RGB " if layer.rgb else ""
            lazy = " (multiscale, level 0)" if layer.multiscale else ""
            self.status.value = (
                f"{layer.name}: {kind}{' x '.join(map(str, shape))} {source_array(layer).dtype}{lazy}."
            )

    def _on_model_changed(self, value: Any) -> None:
        if value == EXPORT_MODEL:  # an action on the current model, which stays selected
            self._set_model(self._last_model)
            chosen = ask_export(self.native, str(self._last_model))
            if chosen is not None:
                self.export_model(*chosen)
            return
        if value == LOAD_CHECKPOINT:
            path = self._ask_checkpoint_path()
            if not path or not self.add_checkpoint(path):  # cancelled or refused: back to the previous model
                values = self._model_values()
                self._set_model(self._last_model if self._last_model in values else values[0])
            return
        self._last_model = value
        if not self._setting_model:
            self._model_auto = False  # the user chose: stop following the image
            self._remembered_choice = False
            self._model_note = ""
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
            text = tooltip = model_card_text(info)
        self.model_info.value = text
        self.model_info.tooltip = tooltip
        self._update_model_source()

    def _update_model_source(self) -> None:
        """Say whether the model follows the image (automatic) or is the user's choice."""
        layer = self.image.value if self.source.value == "layer" else None
        kind = None if layer is None else ("RGB" if layer.rgb else "gray")
        if self._model_auto:
            what = f"for {'an' if kind == 'RGB' else 'a'} {kind} image" if kind else "for this task"
            self.model_source.value = f"Automatic: the {self._task} default {what}.{self._model_note}"
            return
        text = "Chosen by you (remembered). Reset to defaults to follow the image again."
        info = self._model_info(self.model.value)
        suggestion = self._suggest_model(layer) if layer is not None else None
        if info is not None and kind is not None and info.channels != kind.lower():
            text += (
                f" It is a {info.channels} model; the automatic choice for this {kind} image is {suggestion}."
            )
        self.model_source.value = text

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
        from napari_hinet.registry import suggest_model

        return suggest_model(self._task, "rgb" if layer.rgb else "gray")

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
            "HINet weights (*.safetensors *.pth *.pt *.zip);;All files (*)",
        )
        return path

    def add_checkpoint(self, path: str | Path) -> bool:
        """Offer the weights file ``path`` in the model picker and select it.

        The file is read first: a file that is not HINet weights is refused with
        a message naming it and what was expected, and is neither listed nor
        remembered. Returns whether it was added.
        """
        path = str(Path(path).expanduser().resolve())
        problem = _checkpoint_problem(Path(path))
        if problem:
            self._fail(problem)
            return False
        if path not in self._checkpoints:
            self._checkpoints.append(path)
        self._model_auto = False
        self.refresh_models(select=path)
        self._save_state()
        return True

    def export_model(self, path: str | Path, options: dict[str, Any] | None = None) -> Any:
        """Export the selected model to ``path`` in a worker (see docs/sharing.md); returns the worker.

        ``options`` go to :func:`napari_hinet.export` (``format``, ``licence``...).
        """
        model = self._last_model
        self.status.value = f"Exporting {model} to {path}…"
        self._export_worker = start_export(
            model, path, dict(options or {}), self._on_exported, self._export_failed
        )
        return self._export_worker

    def _on_exported(self, path: Path) -> None:
        self.status.value = f"Exported to {path}. docs/sharing.md says which tool uses which file."

    def _export_failed(self, exc: BaseException) -> None:
        self._fail(f"Export failed: {exc}")

    # ------------------------------------------------------------ settings
    def settings(self, layer: Any = None, files: bool = False) -> Any:
        """The current choices as a :class:`napari_hinet.settings.RestoreSettings`.

        ``layer`` resolves the "auto" output type: an 8-bit RGB image (a photo)
        keeps its dtype, anything else gets float32 (no rounding or clipping).
        For ``files`` (folder mode), "auto" keeps each file's dtype, as
        ``napari-hinet restore`` does by default.
        """
        from napari_hinet.settings import RestoreSettings

        choice = self.out_dtype.value
        if choice == "auto" and files:
            choice = "same"
        elif choice == "auto":
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
            ensemble=bool(self.ensemble.value),
            out_dtype=None if choice == "same" else "float32",
        )

    def _saved_controls(self) -> list[Any]:
        """The controls whose value is remembered between sessions (saved on every change)."""
        return [
            self.source,
            self.input_folder,
            self.output_folder,
            self.skip_existing,
            self.model,
            self.device,
            self.precision,
            self.tile,
            self.overlap,
            self.tiling,
            self.ensemble,
            self.out_dtype,
            self.scope,
            self.new_layer,
        ]

    def _result_controls(self) -> list[Any]:
        """Every control that changes what a run produces: disabled while a run goes on."""
        return [*self._saved_controls(), self.image, self.reset_button, self.preview_button]

    def reset_to_defaults(self) -> None:
        """Every setting back to its default; the model follows the image again (automatic)."""
        if self._worker is not None:
            return
        self._loading_state = True
        try:
            self.source.value = "layer"
            self.skip_existing.value = True
            self.device.value = "auto"
            self.precision.value = "auto"
            self.tile.value = 0
            self.overlap.value = -1
            self.tiling.value = "blend"
            self.ensemble.value = False
            self.out_dtype.value = "auto"
            self.scope.value = "whole stack"
            self.new_layer.value = False
            self._model_auto = True
            self._remembered_choice = False
            self._model_note = ""
            layer = self.image.value
            model = self._suggest_model(layer) if layer is not None else self._default_model()
            if model is not None:
                self._set_model(model)
            self._describe_model()
        finally:
            self._loading_state = False
        self._save_state()
        self.status.value = "Settings reset to their defaults; the model follows the image."

    def _save_state(self, _value: Any = None) -> None:
        if self._loading_state:
            return
        state = {
            "settings": self.settings().to_dict(),
            "scope": self.scope.value,
            "new_layer": bool(self.new_layer.value),
            "checkpoints": list(self._checkpoints),
            "model_chosen": not self._model_auto,
            "output_type": self.out_dtype.value,
            "source": self.source.value,
            "input_folder": _folder_text(self.input_folder.value),
            "output_folder": _folder_text(self.output_folder.value),
            "skip_existing": bool(self.skip_existing.value),
        }
        save_widget_state(self._task, state)

    def _restore_state(self) -> None:
        state = load_widget_state(self._task)
        self._checkpoints = [
            p for p in state.get("checkpoints", []) if not _checkpoint_problem(Path(p), quick=True)
        ]
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
        self.ensemble.value = bool(saved.get("ensemble", False))
        self.skip_existing.value = bool(state.get("skip_existing", True))
        for widget, key in ((self.input_folder, "input_folder"), (self.output_folder, "output_folder")):
            if state.get(key):
                widget.value = state[key]
        if state.get("source") in _SOURCES:
            self.source.value = state["source"]
        self._model_auto = not state.get("model_chosen", False)
        self._remembered_choice = not self._model_auto

    def _default_model(self) -> str | None:
        """The registry's default model for the task, else the first available one, else None."""
        from napari_hinet.registry import preferred_model

        return preferred_model(self._task)

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
            self._cancel_event.set()
            if not self._files_run:  # a folder run stops through the event and then reports its summary
                self._worker.quit()

    def on_dock_parent_changed(self, parent: Any) -> None:
        """The dock was closed (napari un-parents our widget): cancel the run, add nothing, free the model."""
        if parent is None:
            self._closed = True
            self.cancel()
            self._restorer = None

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.value = f"Error: {message}"
        show_error(message)

    def _start(self, preview: bool) -> Any:
        if self._worker is not None:
            return None
        if self.source.value == "files" and not preview:
            return self._start_files()
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
        replace = preview or not self.new_layer.value  # read now: the checkbox may change meanwhile

        from napari.qt.threading import thread_worker

        array = source_array(layer)
        # Our own "errored" handler replaces superqt's default re-raise; it shows the error once.
        worker = thread_worker(self._work, start_thread=False, connect={"errored": self._on_errored})(
            settings, array, layer_axes(layer), region
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_returned(result, layer, region, preview, replace))
        self._launch(worker)
        self.progress.value = 0
        self.progress_text.value = "Loading the model…"
        what = "field of view" if preview else region.scope
        self.status.value = f"Running {self._task} on {layer.name!r} ({what})…"
        self._clock.start()
        worker.start()
        return worker

    def _launch(self, worker: Any) -> None:
        """Connect the common worker signals and mark the widget as running (the caller starts it)."""
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._cancel_event.clear()
        self._files_run = False
        self.native.destroyed.connect(worker.quit)  # the dock was deleted: stop at the next batch
        self._set_running(True)

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
        """The Restorer for the chosen model/device/precision, from the shared per-process cache."""
        from napari_hinet.engine import get_restorer

        self._restorer = get_restorer(settings.model, self._task, settings.device, settings.precision)
        return self._restorer

    def _work(self, settings: Any, array: Any, axes: str, region: Region) -> Any:
        """Runs in the worker thread: load (or reuse) the model, restore, return the array."""
        restorer = self._get_restorer(settings)
        out, store = allocate_output(array, axes, region, settings.out_dtype)
        start = time.perf_counter()
        data = yield from iter_restore_region(restorer, array, axes, region, settings, out)
        seconds = time.perf_counter() - start
        n_plane_axes = len(region.planes) + 2
        pixels = 1
        for n in data.shape[:n_plane_axes]:
            pixels *= int(n)
        return _RunResult(
            data=data,
            model_metadata=restorer.metadata,
            device=restorer.describe_device(),
            precision=restorer.precision,
            seconds=seconds,
            pixels=pixels,
            options=run_record(restorer, settings, data.shape, axes),
            output_store=store,
        )

    def _on_progress(self, step: RegionProgress) -> None:
        self._clock.update(step.fraction * _PROGRESS_STEPS, _PROGRESS_STEPS)
        self.progress.value = int(round(step.fraction * _PROGRESS_STEPS))
        eta = self._clock.eta()
        left = f" · {format_seconds(eta)} left" if eta is not None else ""
        plane = f"plane {step.plane + 1}/{step.planes} · " if step.planes > 1 else ""
        self.progress_text.value = f"{plane}tile batch {step.done}/{step.total}{left}"

    def _on_returned(
        self, result: _RunResult, layer: Any, region: Region, preview: bool, replace: bool
    ) -> None:
        if self._closed:  # the dock was closed while the last batch finished: add nothing
            return
        # the dtype really written (auto output type: "None" means the input's dtype)
        options = {**result.options, "out_dtype": str(result.data.dtype)}
        meta = provenance(
            model_metadata=result.model_metadata,
            task=self._task,
            source_layer=layer.name,
            region=region,
            options=options,
            device=result.device,
            precision=result.precision,
            seconds=result.seconds,
            pixels=result.pixels,
            output_store=result.output_store,
        )
        name = output_name(layer.name, self._task, preview) + _plane_suffix(layer, region)
        kwargs = output_layer_kwargs(layer, region, name, meta)
        self._add_or_replace(as_layer_data(result.data), kwargs, replace=replace)
        self.progress.value = _PROGRESS_STEPS
        self.progress_text.value = f"Done in {format_seconds(result.seconds)}."
        rate = format_megapixels_rate(result.pixels, result.seconds)
        self.status.value = (
            f"{result.device} · {result.options.get('backend', 'torch')} {result.precision} · {rate} · "
            f"{result.seconds:.1f} s · "
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
        """Replace our earlier output of the same name only when it has the same kind, shape and
        dtype (a plane never replaces a stack); otherwise add (napari makes the name unique)."""
        old = next(
            (
                lay
                for lay in layers
                if lay.name == name
                and "napari_hinet" in lay.metadata
                and type(lay) is type(new)
                and lay.data.shape == new.data.shape
                and lay.data.dtype == new.data.dtype
                and lay.rgb == new.rgb
            ),
            None,
        )
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
        if self._closed:
            self._restorer = None  # free the model of a closed dock
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        for widget in self._result_controls():
            widget.enabled = not running

    def close_worker(self) -> None:
        """Ask a running worker to stop (used when the widget is closed)."""
        if self._worker is not None:
            self._cancel_event.set()
            self._worker.quit()

    # ------------------------------------------------------------ files (a folder, as the CLI)
    def _start_files(self) -> Any:
        """Restore every image of the input folder into the output folder, with the engine loop of
        ``napari-hinet restore`` (:func:`napari_hinet.cli.restore_files`)."""
        from napari_hinet.cli import UsageError, check_outputs, mark_existing, plan_jobs

        source, target = _folder_text(self.input_folder.value), _folder_text(self.output_folder.value)
        try:
            if not source or not Path(source).is_dir():
                raise ValueError("Choose the input folder (an existing folder of images).")
            if not target:
                raise ValueError("Choose the output folder (it is created if needed).")
            settings = self.settings(None, files=True)
            if settings.model is None:
                raise ValueError("Choose a model first.")
            info = self._model_info(settings.model)
            if info is not None and not info.available:
                raise ValueError(info.missing_message())
            jobs = plan_jobs([source], target)
            mark_existing(jobs, skip_existing=bool(self.skip_existing.value), overwrite=True)
            check_outputs(jobs, settings)  # as the command line: unwritable outputs before any work
        except (ValueError, UsageError) as exc:
            self._fail(str(exc))
            return None
        self._save_state()

        from napari.qt.threading import thread_worker

        worker = thread_worker(self._work_files, start_thread=False, connect={"errored": self._on_errored})(
            settings, jobs
        )
        worker.yielded.connect(self._on_file_done)
        worker.returned.connect(self._on_files_returned)
        self._launch(worker)
        self._files_run = True
        self._files_opened = False
        self._files_outcome: Any = None
        self.progress.value = 0
        self.progress_text.value = f"0/{len(jobs)} files · loading the model…"
        self.status.value = f"Restoring {len(jobs)} file(s) of {source} into {target}…"
        self._clock.start()
        worker.start()
        return worker

    def _work_files(self, settings: Any, jobs: list) -> Any:
        """Worker thread: one yield per file (the napari worker can stop there); Cancel also stops
        inside a file through the engine's cancel token."""
        from napari_hinet.cli import Outcome, restore_files
        from napari_hinet.engine import Cancelled

        restorer = self._get_restorer(settings)
        outcome = Outcome()
        results = restore_files(jobs, settings, restorer, cancel=self._cancel_event)
        try:
            for index, result in enumerate(results):
                outcome.add(result)
                yield index + 1, len(jobs), result
        except Cancelled:
            return outcome, len(jobs), True
        return outcome, len(jobs), False

    def _on_file_done(self, item: Any) -> None:
        done, total, result = item
        self._clock.update(done, total)
        self.progress.value = int(round(_PROGRESS_STEPS * done / max(total, 1)))
        eta = self._clock.eta()
        left = f" · {format_seconds(eta)} left" if eta is not None and done < total else ""
        self.progress_text.value = f"{done}/{total} files · {result.status} {result.job.source.name}{left}"
        if result.status == "restored" and not self._files_opened and not self._closed:
            self._files_opened = True
            self._open_result_file(result.job.target)

    def _open_result_file(self, path: Path) -> None:
        """Show the first restored file as a layer (the others stay on disk)."""
        import numpy as np

        from napari_hinet import io as imio

        image = imio.read_image(path)
        data = np.asarray(image.data)
        rgb = bool(image.meta.axes and image.meta.axes.endswith("C") and data.shape[-1] in (3, 4))
        meta = {"napari_hinet": {"task": self._task, "file": str(path), "model": self.model.value}}
        self._viewer.add_image(data, name=f"{path.name} (HINet {self._task})", rgb=rgb, metadata=meta)

    def _on_files_returned(self, value: Any) -> None:
        outcome, total, cancelled = value
        self._files_outcome = outcome
        left = total - len(outcome.done) - len(outcome.skipped) - len(outcome.failed)
        line = (
            f"Restored {len(outcome.done)}, skipped {len(outcome.skipped)} (output exists), "
            f"failed {len(outcome.failed)}"
        )
        if cancelled:
            line += f"; cancelled, {left} not done (run again with Skip existing to resume)"
        failures = "".join(f"\n{p.name}: {reason}" for p, reason in outcome.failed[:5])
        where = f" Results in {_folder_text(self.output_folder.value)}." if outcome.done else ""
        self.status.value = line + "." + where + failures
        self.progress_text.value = "" if cancelled else f"{total}/{total} files."
        if not cancelled:
            self.progress.value = _PROGRESS_STEPS

    @property
    def files_outcome(self) -> Any:
        """The :class:`napari_hinet.cli.Outcome` of the last folder run (None before one)."""
        return getattr(self, "_files_outcome", None)

    # ------------------------------------------------------------ compare
    def compare(self) -> bool:
        """Input | result (| clean twin) side by side in napari's grid view (zoom and pan are shared);
        a second click restores the layer visibility and leaves the grid view. Returns whether the
        grid view is on."""
        grid = self._viewer.canvas.grid if hasattr(self._viewer, "canvas") else self._viewer.grid
        if self._grid_before is not None:
            enabled, shape, stride, visible = self._grid_before
            for lay in self._viewer.layers:
                lay.visible = visible.get(id(lay), lay.visible)
            grid.shape, grid.stride, grid.enabled = shape, stride, enabled
            self._grid_before = None
            self.status.value = "Compare ended: the layers are shown as before."
            return False
        layer = self.image.value
        if layer is None:
            self._fail("Choose the image layer to compare with its result.")
            return False
        result = self._latest_output(layer)
        if result is None:
            self._fail(
                f"Run {self._task} on {layer.name!r} first; Compare shows input | result side by side."
            )
            return False
        shown = [layer, result]
        clean = _clean_twin(self._viewer.layers, layer)
        if clean is not None:
            shown.append(clean)
        self._grid_before = (
            grid.enabled,
            tuple(grid.shape),
            grid.stride,
            {id(lay): lay.visible for lay in self._viewer.layers},
        )
        layers = self._viewer.layers
        for lay in layers:
            lay.visible = lay in shown
        # grid cells take the visible layers left to right from the bottom of the layer list: give the
        # shown layers the slots they already hold, in the order input, result, clean
        slots = sorted(layers.index(lay) for lay in shown)
        for slot, lay in zip(slots, shown, strict=True):
            current = layers.index(lay)
            if current != slot:
                layers.move(current, slot if slot < current else slot + 1)
        grid.shape = (1, len(shown))
        grid.stride = 1
        grid.enabled = True
        self._viewer.reset_view()
        names = " | ".join(lay.name for lay in shown)
        self.status.value = (
            f"Side by side (zoom and pan are shared): {names}. Click Compare again to go back."
        )
        return True

    def _latest_output(self, layer: Any) -> Any:
        """The newest output layer made from ``layer`` by this task (a whole-image run first)."""
        candidates = [
            lay
            for lay in self._viewer.layers
            if (lay.metadata.get("napari_hinet") or {}).get("source_layer") == layer.name
            and (lay.metadata.get("napari_hinet") or {}).get("task") == self._task
        ]
        full = [lay for lay in candidates if lay.data.shape == layer.data.shape]
        return (full or candidates or [None])[-1]


def _values(widget: Any) -> list[Any]:
    """The values a categorical widget offers."""
    return list(widget.choices)


def _folder_text(value: Any) -> str:
    """A FileEdit's folder as text; ``""`` when none is chosen (magicgui shows an empty path as ".")."""
    text = str(value) if value is not None else ""
    return "" if text in ("", ".") else text


def _clean_twin(layers: Any, layer: Any) -> Any:
    """The sample's clean twin of ``layer``: the layer named like it with "(clean)" instead of its
    "(noisy)"/"(blurred)"/"(rainy)"..., with the same shape; None if there is none."""
    import re

    stem = re.sub(r"\s*\([^()]*\)\s*$", "", layer.name)
    for lay in layers:
        if lay is not layer and lay.name == f"{stem} (clean)" and lay.data.shape == layer.data.shape:
            return lay
    return None


def _plane_suffix(layer: Any, region: Region) -> str:
    """``" [z=2]"`` for a current-plane run (one index per plane axis), ``""`` otherwise, so a plane's
    output never takes the name of the whole stack's."""
    if region.scope != "plane":
        return ""
    labels = list(getattr(layer, "axis_labels", []) or [])[: len(region.planes)]
    default = ["t", "z"][-len(region.planes) :] if len(region.planes) <= 2 else []
    parts = []
    for i, sl in enumerate(region.planes):
        label = labels[i] if i < len(labels) else ""
        if not label or label.lstrip("-").isdigit() or label.startswith("axis"):
            label = default[i] if i < len(default) else f"axis {i}"
        parts.append(f"{label}={sl.start or 0}")
    return f" [{', '.join(parts)}]"


def _checkpoint_problem(path: Path, quick: bool = False) -> str:
    """Why ``path`` cannot be offered as a model (``""`` if it can). ``quick`` checks only that it is
    a file with a weights suffix; otherwise the weights are read (never unpickled beyond tensors)."""
    expected = (
        "Expected HINet weights: a .safetensors file saved by napari-hinet (e.g. by Fine-tune), or a "
        "PyTorch .pth/.pt checkpoint of HINet such as the authors' official ones, or a bioimage.io "
        "package (.zip) of a HINet."
    )
    if not path.is_file():
        return f"No checkpoint file at {path}. {expected}"
    if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
        return f"{path.name} is not a model file (suffix {path.suffix or 'none'}). {expected}"
    if quick:
        return ""
    try:
        from napari_hinet.checkpoints import infer_config, load_model, load_state_dict

        if path.suffix.lower() == ".zip":  # a bioimage.io package: only HINet ones load
            load_model(path)
            return ""

        state_dict, meta = load_state_dict(path)
        if not meta.get("config"):
            infer_config(state_dict)
    except Exception as exc:  # any file can be chosen: every failure is a clear refusal
        detail = str(exc) if isinstance(exc, (ValueError, OSError)) else "it is not a readable checkpoint"
        return f"Cannot use {path.name} as a model ({path}): {detail}. {expected}"
    return ""


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
