"""The Fine-tune dock widget: train a HINet model on your own images, with live plots.

Top to bottom: data mode and source (layers or folders) with the pickers of
that mode, validation, base model, patch size, batch size, steps, learning
rate, validation interval, device and the save name; **Start**, **Stop**,
**Resume** and **Save now**; a progress bar with ETA; live plots of the training
loss and the validation PSNR; a before/after preview of a validation patch that
updates at every validation; a status line.

Training runs in a napari generator thread worker driving
:class:`napari_hinet.training.FinetuneJob` step by step. **Stop** asks the job to
stop before its next step (it writes a checkpoint); **Resume** continues the same
run, or, after a restart of napari, the run saved under the same name. When the
run completes, the best-by-validation model is saved into the user models folder
and every open Denoise/Deblur/Derain widget lists it at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
    SpinBox,
)

from ._common import (
    ProgressClock,
    connect_layer_list,
    format_seconds,
    image_layer_choices,
    load_widget_state,
    save_widget_state,
    scrollable_container_class,
)

if TYPE_CHECKING:
    import napari

NEW_MODEL = "__new__"

#: mode -> (label, role of picker A, role of picker B or None)
MODES = {
    "synthetic": ("synthetic (clean images, degraded on the fly)", "Clean images", None),
    "paired": ("paired (degraded + clean)", "Degraded images", "Clean images"),
    "n2n": ("Noise2Noise (two noisy acquisitions)", "Acquisition 1", "Acquisition 2"),
    "self_supervised": ("self-supervised (noisy images only)", "Noisy images", None),
}
DEGRADATIONS = [
    ("Gaussian noise", "gaussian"),
    ("Poisson-Gaussian (camera) noise", "poisson_gaussian"),
    ("motion blur", "motion_blur"),
    ("rain streaks", "rain"),
]
#: Self-supervised methods offered here (the API has two more, measured no better).
SSL_METHODS = [
    ("Neighbor2Neighbor (default)", "neighbor"),
    ("SURE (best when the noise level is known)", "sure"),
]
_VALIDATIONS = ["hold out part of the data", "separate data"]
_PROGRESS_STEPS = 1000

#: Tooltips: what the control does, its default, when to change it.
TOOLTIPS = {
    "mode": "How the training pairs are made. Default: paired (degraded images with their clean twins).\n"
    "synthetic: clean images only, degraded on the fly; Noise2Noise: two noisy acquisitions of the same "
    "scene; self-supervised: noisy images only (validation is then against noisy views).",
    "source": "Where the images come from: open layers, or folders of files (pairs matched by file name).\n"
    "Default: layers.",
    "layer_a": "The training input: degraded (paired), clean (synthetic), first acquisition (Noise2Noise) "
    "or noisy (self-supervised) images.\nDefault: the top image layer that is not marked clean.",
    "layer_b": "The training target: the clean twin (paired) or the second acquisition (Noise2Noise). "
    "It must be a different image from the input.\nDefault: a layer whose name says clean, else none.",
    "folder_a": "Folder of training inputs (see the layer picker above for what they are). Default: none.",
    "folder_b": "Folder of training targets, with the same file names as the inputs; not the input folder."
    "\nDefault: none.",
    "degradation": "The degradation added to clean images (synthetic mode). Default: Poisson-Gaussian "
    "camera noise.\nChoose the one that matches your real images.",
    "ssl_method": "How a model learns from noisy images alone. Default: Neighbor2Neighbor.\n"
    "SURE trains on the full image at its own noise level and gained most in our benchmark when given the "
    "camera's noise (Noise a, b); with the noise estimated from the images it also removes noise that is "
    "really there, so check the result.",
    "noise_model": "SURE only: the noise variance a*x + b of a pixel whose clean value is x, in the units "
    "of your images.\nA camera in ADU: a = gain (ADU per electron), b = read noise (ADU)^2 - gain * "
    "offset. Default: empty = estimated from each image.",
    "validation": "How the model is checked while it trains. Default: hold out part of the data.\n"
    "Choose separate data when you have a validation image pair.",
    "val_fraction": "Share of the training images (or rows of a single image) kept for validation. "
    "Default: 0.2.\nLower it when data is scarce; raise it for a steadier PSNR curve.",
    "val_a": "Validation input layer (separate validation). Default: none chosen.",
    "val_b": "Validation target layer: clean if you have it. Without one (self-supervised), validation is "
    "against a noisy view and its PSNR is lower than against clean images.\nDefault: none.",
    "base_model": "The model training starts from. Default: the bundled default model (denoise first).\n"
    "Start from the model closest to your images; 'new HINet' trains from scratch (needs many steps).",
    "patch_size": "Side of the random training patches, in pixels. Default: 64.\n"
    "Larger patches see more context but are slower; it must fit in your smallest image.",
    "batch_size": "Patches per training step. Default: 4.\nRaise it on a GPU; lower it if memory runs out.",
    "steps": "Number of training steps. Default: 200.\nMore steps fit your data better (watch the "
    "validation curve: stop when it flattens).",
    "time_budget": "Train for this many seconds instead of a number of steps. Default: 0 (off: use Steps).\n"
    "The first steps are timed and the schedule (warm-up, cosine decay) is fitted so that it ends when "
    "the time is up; the progress bar shows the fitted number of steps.",
    "lr": "Learning rate. Default: 0.0001.\nLower it (e.g. 0.00005) if the validation PSNR drops at the "
    "start; raise it when training from scratch.",
    "val_every": "Validate (and update the preview and checkpoint) every this many steps. Default: 20.\n"
    "Lower it for a finer curve; each validation costs time.",
    "device": "Where training runs. Default: the first device (a GPU if there is one, else the CPU).",
    "save_name": "Name of the new model in the model lists (and its file in the user models folder).\n"
    "Default: base model, mode and time. Resume continues the run saved under this name.",
    "start_button": "Start a new training run (a run saved earlier under the same name starts over).",
    "stop_button": "Stop after the current step; the run is checkpointed (Resume continues it).",
    "resume_button": "Continue the stopped run, or the run saved under the Save as name.",
    "save_button": "Save the best model so far into the user models folder (e.g. after Stop).",
    "export_button": "Export the saved model as a bioimage.io package (for deepImageJ, ilastik, QuPath, "
    "Icy), ONNX or TorchScript; see docs/sharing.md.",
    "progress": "Training steps done, with the time left.",
    "status": "What happened last: the data used, the saved model and its validation PSNR, or an error.",
}


@dataclass
class _Prepared:
    """Sent once by the worker when the job is ready (data read, model loaded)."""

    summary: str
    steps_done: int
    reference: str  # what validation compares with: "clean" or a noisy view (Noise2Noise, self-supervised)
    losses: tuple[list[int], list[float]]  # curves so far (not empty after a resume), copied
    psnr: tuple[list[int], list[float]]
    preview: Any  # (input, output, target) of the first validation patch, or None


@dataclass
class _Finished:
    """What the worker returns: a saved model, or a stop."""

    stopped: bool
    steps: int
    path: Path | None = None
    best_psnr: float | None = None
    start_psnr: float | None = None


def runs_dir() -> Path:
    """Checkpoints of widget runs: ``<user models folder>/../runs/<save name>``."""
    from napari_hinet.registry import user_models_dir

    return user_models_dir().parent / "runs"


class FinetuneWidget(scrollable_container_class()):
    """Dock widget fine-tuning a model on layers or folders (see the module docstring).

    Scripting/tests: set the pickers' ``.value`` and call :meth:`start`,
    :meth:`stop`, :meth:`resume`; ``is_running`` tells whether a worker runs.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker: Any = None
        self._job: Any = None
        self._stop_event = threading.Event()
        self._clock = ProgressClock()
        self._losses: tuple[list[int], list[float]] = ([], [])
        self._psnr: tuple[list[int], list[float]] = ([], [])
        self.last_result: _Finished | None = None
        self._loading_state = True  # no saving while the saved settings are being applied
        self.noisy_validation = False  # the current run validates against noisy views

        # --- data
        self.mode = ComboBox(label="Data mode", choices=[(v[0], k) for k, v in MODES.items()], value="paired")
        self.source = RadioButtons(label="Data from", choices=["layers", "folders"], value="layers")
        self.layer_a = ComboBox(label="Degraded images", choices=self._image_choices)
        self.layer_b = ComboBox(label="Clean images", choices=self._image_choices, nullable=True, value=None)
        self.folder_a = FileEdit(label="Degraded folder", mode="d")
        self.folder_b = FileEdit(label="Clean folder", mode="d")
        self.degradation = ComboBox(label="Degradation", choices=DEGRADATIONS, value="poisson_gaussian")
        self.ssl_method = ComboBox(label="Method", choices=SSL_METHODS, value="neighbor")
        self.noise_model = LineEdit(label="Noise a, b", value="")
        self.noise_model.native.setPlaceholderText("empty: estimated from the images")
        self.validation = RadioButtons(label="Validation", choices=_VALIDATIONS, value=_VALIDATIONS[0])
        self.val_fraction = FloatSpinBox(label="Held-out fraction", min=0.05, max=0.5, step=0.05, value=0.2)
        self.val_a = ComboBox(label="Validation input", choices=self._image_choices)
        self.val_b = ComboBox(
            label="Validation target", choices=self._image_choices, nullable=True, value=None
        )
        # --- model and recipe
        self.base_model = ComboBox(label="Base model", choices=self._model_choices)
        self.patch_size = SpinBox(label="Patch size", min=16, max=1024, step=16, value=64)
        self.batch_size = SpinBox(label="Batch size", min=1, max=256, value=4)
        self.steps = SpinBox(label="Steps", min=1, max=1_000_000, value=200)
        self.time_budget = SpinBox(label="Time budget (s)", min=0, max=7 * 86_400, step=30, value=0)
        self.lr = FloatSpinBox(label="Learning rate", min=1e-7, max=1e-1, step=1e-5, value=1e-4)
        self.lr.native.setDecimals(6)
        self.val_every = SpinBox(label="Validate every", min=1, max=100_000, value=20)
        self.device = ComboBox(label="Device", choices=self._device_choices)
        self.save_name = LineEdit(label="Save as", value="")
        self.save_name.native.setPlaceholderText("name of the new model (default: automatic)")
        # --- actions and feedback
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False)
        self.save_button = PushButton(text="Save now", enabled=False)
        self.export_button = PushButton(text="Export…", enabled=False)
        self.saved_path: Path | None = None  # the model saved last: what Export… exports
        buttons = Container(
            widgets=[
                self.start_button,
                self.stop_button,
                self.resume_button,
                self.save_button,
                self.export_button,
            ],
            layout="horizontal",
            labels=False,
        )
        self.progress = ProgressBar(label="Progress", min=0, max=_PROGRESS_STEPS, value=0)
        self.progress_text = Label(label="", value="")
        self.status = Label(label="", value="Ready.")
        self.extend(
            [
                self.mode,
                self.source,
                self.layer_a,
                self.layer_b,
                self.folder_a,
                self.folder_b,
                self.degradation,
                self.ssl_method,
                self.noise_model,
                self.validation,
                self.val_fraction,
                self.val_a,
                self.val_b,
                self.base_model,
                self.patch_size,
                self.batch_size,
                self.steps,
                self.time_budget,
                self.lr,
                self.val_every,
                self.device,
                self.save_name,
                buttons,
                self.progress,
                self.progress_text,
            ]
        )
        self._add_plots()
        self.append(self.status)
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QSizePolicy

        for label in (self.progress_text, self.status):
            label.native.setWordWrap(True)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        for name, text in TOOLTIPS.items():
            getattr(self, name).tooltip = text

        self._restore_state()
        self._default_layers()
        for widget in (self.mode, self.source, self.validation, self.ssl_method):
            widget.changed.connect(self._update_visibility)
        for widget in self._saved_controls():
            widget.changed.connect(self._save_state)
        self.start_button.changed.connect(lambda: self.start())
        self.stop_button.changed.connect(self.stop)
        self.resume_button.changed.connect(lambda: self.resume())
        self.save_button.changed.connect(lambda: self.save_now())
        self.export_button.changed.connect(lambda: self._ask_export())
        self._disconnect_layers = connect_layer_list(viewer, self._reset_layer_choices, owner=self.native)
        self._update_visibility()
        self._loading_state = False

    def _add_plots(self) -> None:
        from qtpy.QtWidgets import QHBoxLayout, QWidget

        from ._plots import CurvePlot, PreviewStrip

        self.loss_plot = CurvePlot("training loss", "#ff9f1c")
        self.psnr_plot = CurvePlot("validation PSNR", "#2ec4b6", unit=" dB")
        self.preview_strip = PreviewStrip()
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.psnr_plot)
        row.setMinimumHeight(self.loss_plot.minimumHeight())
        self.inner_layout.addWidget(row)
        self.inner_layout.addWidget(self.preview_strip)

    # ------------------------------------------------------------ choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layer_choices(self._viewer)

    def _reset_layer_choices(self, _event: Any = None) -> None:
        for widget in (self.layer_a, self.layer_b, self.val_a, self.val_b):
            widget.reset_choices()
        self._default_layers()

    def _default_layers(self) -> None:
        """Pickers left empty get a sensible layer: the input a layer not named clean (a clean one in
        synthetic mode), the target a layer named clean that is not the input; never input = target."""
        layers = [c[1] for c in self._image_choices()]
        marked = [lay for lay in layers if "clean" in lay.name.lower()]
        unmarked = [lay for lay in layers if lay not in marked]
        if self.layer_a.value is None or self.layer_a.value not in layers:
            pool = (marked or unmarked) if self.mode.value == "synthetic" else (unmarked or marked)
            if pool:
                self.layer_a.value = pool[0]
        if self.layer_b.value is None or self.layer_b.value is self.layer_a.value:
            target = next((lay for lay in marked if lay is not self.layer_a.value), None)
            self.layer_b.value = target

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_hinet.registry import base_models

        choices = [(f"{m.name} ({m.task}, {m.kind})", m.name) for m in base_models()]
        choices.append(("new HINet (train from scratch)", NEW_MODEL))
        return choices

    def _device_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_hinet.engine.devices import available_devices, describe_device

        return [(describe_device(d), d) for d in available_devices() if d != "mps"]

    def _update_visibility(self, _value: Any = None) -> None:
        label, role_a, role_b = MODES[self.mode.value]
        layers = self.source.value == "layers"
        self.layer_a.label = role_a
        self.layer_b.label = role_b or ""
        self.folder_a.label = role_a.replace("images", "folder").replace("Acquisition", "Acquisition folder")
        self.folder_b.label = (
            (role_b or "").replace("images", "folder").replace("Acquisition", "Acquisition folder")
        )
        self.layer_a.visible = layers
        self.layer_b.visible = layers and role_b is not None
        self.folder_a.visible = not layers
        self.folder_b.visible = not layers and role_b is not None
        self.degradation.visible = self.mode.value == "synthetic"
        self_supervised = self.mode.value == "self_supervised"
        self.ssl_method.visible = self_supervised
        self.noise_model.visible = self_supervised and self.ssl_method.value == "sure"
        separate = self.validation.value == _VALIDATIONS[1]
        self.val_fraction.visible = not separate
        self.val_a.visible = self.val_b.visible = separate
        self.val_a.label = "Validation clean" if self.mode.value == "synthetic" else "Validation input"
        self.val_b.visible = separate and self.mode.value != "synthetic"

    # ------------------------------------------------------------ settings
    def _state(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "source": self.source.value,
            "folder_a": str(self.folder_a.value),
            "folder_b": str(self.folder_b.value),
            "degradation": self.degradation.value,
            "ssl_method": self.ssl_method.value,
            "noise_model": self.noise_model.value,
            "validation": self.validation.value,
            "val_fraction": self.val_fraction.value,
            "base_model": self.base_model.value,
            "patch_size": self.patch_size.value,
            "batch_size": self.batch_size.value,
            "steps": self.steps.value,
            "time_budget": self.time_budget.value,
            "lr": self.lr.value,
            "val_every": self.val_every.value,
            "device": self.device.value,
        }

    def _saved_controls(self) -> list[Any]:
        """Controls whose value is remembered between sessions (saved on every change)."""
        return [getattr(self, name) for name in self._state()]

    def _result_controls(self) -> list[Any]:
        """Every control that changes what training produces: disabled while it runs."""
        return [
            *self._saved_controls(),
            self.layer_a,
            self.layer_b,
            self.val_a,
            self.val_b,
            self.save_name,
        ]

    def _save_state(self, _value: Any = None) -> None:
        if not self._loading_state:
            save_widget_state("finetune", self._state())

    def _restore_state(self) -> None:
        state = load_widget_state("finetune")
        for name, value in state.items():
            widget = getattr(self, name, None)
            if widget is None or value is None:
                continue
            try:
                widget.value = value
            except (ValueError, TypeError):
                pass  # a model or device that is gone: keep the default

    # ------------------------------------------------------------ building the job
    def _data(self) -> dict[str, Any]:
        """The data arguments of FinetuneJob for the chosen mode and source."""
        mode = self.mode.value
        _label, role_a, role_b = MODES[mode]
        if self.source.value == "layers":
            a, b = self.layer_a.value, self.layer_b.value
            if a is None or (role_b is not None and b is None):
                raise ValueError(
                    f"Choose the {role_a.lower()}{' and ' + role_b.lower() if role_b else ''} layers."
                )
            rgb = bool(a.rgb)
            if role_b is not None:
                _refuse_same(a, b, role_a, role_b)
            a, b = _layer_array(a), (_layer_array(b) if role_b else None)
        else:
            a, b, rgb = str(self.folder_a.value), str(self.folder_b.value), None
            for folder, role in ((a, role_a), (b, role_b)):
                if role is not None and not Path(folder).is_dir():
                    raise ValueError(f"The {role.lower()} folder {folder!r} does not exist.")
            if role_b is not None and Path(a).resolve() == Path(b).resolve():
                raise ValueError(
                    f"The {role_a.lower()} and {role_b.lower()} folders are the same folder ({a}): the "
                    "model would learn to copy its input. Choose the folder of the other images."
                )
        args: dict[str, Any] = {"mode": mode, "rgb": rgb}
        if mode == "synthetic":
            args.update(clean=a, degradation=self.degradation.value)
        else:
            args.update(inputs=a, targets=b)
        if self.validation.value == _VALIDATIONS[1]:
            if self.val_a.value is None:
                raise ValueError("Choose the validation layer, or hold out part of the training data.")
            if self.val_b.value is not None and mode != "synthetic":
                _refuse_same(self.val_a.value, self.val_b.value, "validation input", "validation target")
            val_a = _layer_array(self.val_a.value)
            val_b = _layer_array(self.val_b.value) if self.val_b.value is not None else None
            if mode == "synthetic":
                args["val_clean"] = val_a
            elif mode == "self_supervised":
                args.update(val_inputs=val_a, val_targets=val_b)
            else:
                if val_b is None:
                    raise ValueError("Choose the validation target layer.")
                args.update(val_inputs=val_a, val_targets=val_b)
        return args

    def _config(self, name: str, resume: bool, rgb: bool | None = None) -> Any:
        """The FinetuneConfig of the form. ``rgb`` (the data's kind, None if unknown) sets the
        channel rule as inference does: gray data is copied into R, G, B for an RGB model, RGB
        data becomes luminance for a gray model."""
        from napari_hinet.training import FinetuneConfig

        steps = int(self.steps.value)
        budget = float(self.time_budget.value) or None  # 0 = off
        return FinetuneConfig(
            steps=steps,
            time_budget_s=budget,
            batch_size=int(self.batch_size.value),
            patch_size=int(self.patch_size.value),
            lr=float(self.lr.value),
            warmup_steps=20 if budget else max(1, min(20, steps // 10)),
            val_every=int(self.val_every.value),
            checkpoint_every=int(self.val_every.value),
            device=str(self.device.value),
            val_fraction=float(self.val_fraction.value),
            channel_rule=None if rgb is None else ("gray" if rgb else "replicate"),
            ssl_method=str(self.ssl_method.value),
            noise_model=_noise_model(self.noise_model.value) if self.ssl_method.value == "sure" else None,
            run_dir=str(runs_dir() / name),
            resume=resume,
            name=name,
        )

    def _name(self) -> str:
        name = self.save_name.value.strip()
        if not name:
            base = "new" if self.base_model.value == NEW_MODEL else str(self.base_model.value)
            name = f"{base}-{self.mode.value}-{time.strftime('%Y%m%d-%H%M%S')}"
            self.save_name.value = name
        bad = set(name) & set('/\\:*?"<>|')
        if bad:
            raise ValueError(
                f"The save name {name!r} contains {''.join(sorted(bad))}; use letters, digits, - and _."
            )
        return name

    # ------------------------------------------------------------ actions
    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def start(self) -> Any:
        """Start a new run (a run saved earlier under the same name is started over)."""
        return self._launch(resume=False)

    def resume(self) -> Any:
        """Continue the stopped run, or the run saved under the "Save as" name."""
        return self._launch(resume=True)

    def stop(self) -> None:
        """Stop before the next step; the run is checkpointed and can be resumed."""
        if self._worker is not None:
            self._stop_event.set()
            self.stop_button.enabled = False
            self.status.value = "Stopping after the current step…"

    def save_now(self) -> Path | None:
        """Save the best model so far (e.g. after Stop) into the user models folder."""
        if self._job is None or self._worker is not None:
            return None
        try:
            path = self._job.save(name=self._name())
        except (OSError, ValueError) as exc:
            self._fail(str(exc))
            return None
        self._announce_saved(path, self._job.trainer.best_psnr, self._job.trainer.start_psnr)
        return path

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.value = f"Error: {message}"
        show_error(message)

    def _launch(self, resume: bool) -> Any:
        if self._worker is not None:
            return None
        try:
            name = self._name()
            job = self._job if (resume and self._job is not None) else None
            spec = None
            if job is None:
                data = self._data()
                spec = (data, self._config(name, resume, data.get("rgb")), self.base_model.value)
        except ValueError as exc:
            self._fail(str(exc))
            return None
        self._save_state()
        if job is None:
            self._job = None
            self._losses, self._psnr = ([], []), ([], [])
            self.loss_plot.set_data([], [])
            self.psnr_plot.set_data([], [])

        from napari.qt.threading import thread_worker

        self._stop_event.clear()
        worker = thread_worker(self._work, start_thread=False, connect={"errored": self._on_errored})(
            spec, name
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.native.destroyed.connect(self._stop_event.set)  # the dock was closed: stop (checkpointed)
        self._set_running(True)
        self.status.value = "Reading the data and loading the model…" if job is None else "Resuming…"
        self._clock.start()
        worker.start()
        return worker

    def _work(self, spec: Any, name: str) -> Any:
        """Worker thread: prepare the job (checks raise before training), then train step by step."""
        if spec is not None:
            from napari_hinet.training import FinetuneJob

            data, config, base = spec
            self._job = FinetuneJob(None if base == NEW_MODEL else base, config=config, **data)
        job = self._job
        history = job.trainer.history
        yield _Prepared(
            _summary(job),
            job.steps_done,
            _validation_reference(job),
            (list(history.steps), list(history.losses)),
            (list(history.val_steps), list(history.val_psnr)),
            job.trainer.predict_val(0),
        )
        for event in job.run(should_stop=self._stop_event.is_set):
            if event.val_psnr is None:
                yield event, None, None
            else:  # the whole validation curve (it includes the starting model's PSNR at step 0)
                curve = (list(history.val_steps), list(history.val_psnr))
                yield event, job.trainer.predict_val(0), curve
        trainer = job.trainer
        if job.stopped:
            return _Finished(True, job.steps_done, None, trainer.best_psnr, trainer.start_psnr)
        path = job.save(name=name)
        return _Finished(False, job.steps_done, path, trainer.best_psnr, trainer.start_psnr)

    # ------------------------------------------------------------ worker signals
    def _on_yielded(self, item: Any) -> None:
        if isinstance(item, _Prepared):
            self._label_validation(item.reference)
            self._losses, self._psnr = item.losses, item.psnr
            self.loss_plot.set_data(*self._losses)
            self.psnr_plot.set_data(*self._psnr)
            self._clock.update(item.steps_done, int(self.steps.value))
            self.status.value = item.summary
            if item.preview is not None:
                self.preview_strip.set_images(item.steps_done, *item.preview)
            return
        event, preview, curve = item
        self._losses[0].append(event.step)
        self._losses[1].append(event.loss)
        self.loss_plot.set_data(*self._losses)
        if curve is not None:
            self._psnr = curve
            self.psnr_plot.set_data(*self._psnr)
        if preview is not None:
            self.preview_strip.set_images(event.step, *preview)
        self._clock.update(event.step, event.total)
        self.progress.value = int(round(_PROGRESS_STEPS * event.step / max(event.total, 1)))
        eta = self._clock.eta()
        left = f" · {format_seconds(eta)} left" if eta is not None else ""
        best = f" · best val PSNR {event.best_psnr:.2f} dB" if event.best_psnr is not None else ""
        self.progress_text.value = f"step {event.step}/{event.total} · loss {event.loss:.4f}{best}{left}"

    def _on_returned(self, result: _Finished) -> None:
        self.last_result = result
        if result.stopped:
            self.status.value = f"Stopped at step {result.steps}; checkpoint saved. Resume continues, Save now keeps the best model."
            return
        self.progress.value = _PROGRESS_STEPS
        self._announce_saved(result.path, result.best_psnr, result.start_psnr)

    def _label_validation(self, reference: str) -> None:
        """Say in the plot, preview and status whether validation is against clean images, noisy
        views, or an estimate of the error against clean images (SURE)."""
        noisy = reference.startswith("noisy")
        self.noisy_validation = noisy
        if reference == "clean":
            title, target = "validation PSNR", "target (clean)"
        elif noisy:
            title, target = "validation PSNR vs noisy views", f"target: {reference}"
        else:  # an estimate against the clean image (SURE): the target shown is the noise variance
            title, target = f"validation PSNR vs {reference}", "noise variance (SURE)"
        self.psnr_plot.set_title(title)
        self.preview_strip.set_captions(("input", "output (current model)", target))

    def _announce_saved(self, path: Path | None, best: float | None, start: float | None) -> None:
        from .restore_widget import refresh_all_model_lists

        refresh_all_model_lists()
        self.base_model.reset_choices()
        against = (
            " against noisy views (not clean images: the PSNR against clean ones is higher)"
            if self.noisy_validation
            else ""
        )
        gain = (
            f" Validation PSNR{against} {start:.2f} → {best:.2f} dB."
            if best is not None and start is not None
            else ""
        )
        self.status.value = f"Saved {Path(path).stem!r} to {path}.{gain} It is now in the model lists."
        if path is not None:
            self.saved_path = Path(path)
            self.export_button.enabled = True

    def _ask_export(self) -> None:
        from ._export import ask_export

        if self.saved_path is not None:
            chosen = ask_export(self.native, str(self.saved_path))
            if chosen is not None:
                self.export_model(*chosen)

    def export_model(self, path: str | Path, options: dict[str, Any] | None = None) -> Any:
        """Export the model saved last to ``path`` in a worker (docs/sharing.md); returns the worker."""
        from ._export import start_export

        self.status.value = f"Exporting {self.saved_path} to {path}…"
        self._export_worker = start_export(
            str(self.saved_path), path, dict(options or {}), self._on_exported, self._on_errored
        )
        return self._export_worker

    def _on_exported(self, path: Path) -> None:
        self.status.value = f"Exported to {path}. docs/sharing.md says which tool uses which file."

    def _on_errored(self, exc: BaseException) -> None:
        from napari.utils.notifications import notification_manager

        self.status.value = f"Error: {exc}"
        notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _on_aborted(self) -> None:
        self.status.value = "Training interrupted."

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        resumable = self._job is not None and getattr(self._job, "stopped", False)
        self.start_button.enabled = not running
        self.stop_button.enabled = running
        self.resume_button.enabled = not running and (resumable or self._job is None)
        self.save_button.enabled = not running and self._job is not None
        self.export_button.enabled = not running and self.saved_path is not None
        for widget in self._result_controls():
            widget.enabled = not running

    def on_dock_parent_changed(self, parent: Any) -> None:
        """napari closed the dock (un-parented the widget): stop training (it is checkpointed)."""
        if parent is None:
            self.close_worker()

    def close_worker(self) -> None:
        """Stop a running training (used when the widget is closed)."""
        if self._worker is not None:
            self._stop_event.set()

    # ------------------------------------------------------------ docs/screenshots
    def screenshot_setup(self, steps: int = 60) -> None:
        """Choose the settings used for the documentation screenshot (noisy fluorescence sample)."""
        layers = {layer.name: layer for layer in self._viewer.layers}
        self.mode.value = "paired"
        self.source.value = "layers"
        self.layer_a.value = layers["nuclei (noisy)"]
        self.layer_b.value = layers["nuclei (clean)"]
        if "hinet-denoise-fluo" in list(self.base_model.choices):
            self.base_model.value = "hinet-denoise-fluo"
        self.steps.value = steps
        self.val_every.value = max(1, steps // 6)
        self.save_name.value = "nuclei-finetuned-demo"


def _refuse_same(a: Any, b: Any, role_a: str, role_b: str) -> None:
    """Raise ValueError when the two layers are one image (the same layer, or equal pixels): training
    would teach the model to copy its input, and validation would report a false success."""
    if b is None:
        return
    same = a is b
    if not same and a.data.shape == b.data.shape:
        same = np.array_equal(_layer_array(a), _layer_array(b))
    if same:
        what = "the same layer" if a is b else "the same image (equal pixels)"
        raise ValueError(
            f"The {role_a.lower()} ({a.name!r}) and {role_b.lower()} ({b.name!r}) are {what}: the model "
            f"would learn to copy its input. Choose the other image as {role_b.lower()}."
        )


def _layer_array(layer: Any) -> np.ndarray:
    """Training data from a layer: level 0, loaded into memory (training samples random patches)."""
    data = layer.data[0] if layer.multiscale else layer.data
    return np.asarray(data)


def _noise_model(text: str) -> tuple[float, float] | None:
    """The "Noise a, b" field: two numbers, or empty (None: estimated from the images)."""
    text = text.strip()
    if not text:
        return None
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise ValueError(
            f"Noise a, b: type two numbers, e.g. '0.01, 0.0004' (variance a*x + b), or leave it empty to "
            f"estimate the noise from the images; got {text!r}."
        )
    return values


def _validation_reference(job: Any) -> str:
    """What the job's validation compares with: ``"clean"`` or the kind of noisy view."""
    reference = getattr(job, "val_reference", None) or job.data_summary.get("val_target") or "clean"
    return str(reference)


def _summary(job: Any) -> str:
    data = job.data_summary
    resumed = f" Resumed at step {job.steps_done}." if job.steps_done else ""
    reference = _validation_reference(job)
    against = (
        f" against noisy views ({reference}; PSNR lower than against clean images)"
        if reference.startswith("noisy")
        else ("" if reference == "clean" else f" against {reference}")
    )
    return (
        f"Training {job.base_name} ({job.task}) on {data.get('images')} image(s), mode {job.mode}, "
        f"validation: {data.get('validation')}{against}.{resumed}"
    )
