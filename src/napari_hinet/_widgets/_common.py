"""Pieces shared by the napari-hinet widgets.

* :func:`load_widget_state` / :func:`save_widget_state`: widget settings kept
  between sessions in one JSON file (``widgets.json``) in the user config
  folder, or in ``$NAPARI_HINET_CONFIG_DIR`` (tests point it at a temp folder).
* :class:`ProgressClock`: progress fraction, rate and ETA from ``(done, total)``.
* :func:`image_layer_choices` / :func:`follow_active_image_layer`: an image-layer
  picker kept in sync with the viewer's layer list.
* :func:`format_seconds`, :func:`format_megapixels_rate`: short human texts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Environment variable overriding the folder of ``widgets.json``.
CONFIG_DIR_ENV = "NAPARI_HINET_CONFIG_DIR"
_STATE_FILE = "widgets.json"


# ------------------------------------------------------------------ persistence
def config_dir() -> Path:
    """Folder holding the widget settings: ``$NAPARI_HINET_CONFIG_DIR`` or the platform config folder."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-hinet", appauthor=False))


def _read_all() -> dict[str, Any]:
    path = config_dir() / _STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no file yet, or a damaged one: start from the defaults
    return data if isinstance(data, dict) else {}


def load_widget_state(key: str) -> dict[str, Any]:
    """The settings saved under ``key`` (e.g. ``"denoise"``); ``{}`` if none were saved."""
    value = _read_all().get(key)
    return dict(value) if isinstance(value, dict) else {}


def save_widget_state(key: str, state: dict[str, Any]) -> None:
    """Save ``state`` (JSON-serialisable) under ``key``, atomically. Errors are ignored:
    failing to remember settings must never break a run."""
    try:
        folder = config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        data = _read_all()
        data[key] = state
        from napari_hinet.io import atomic_output

        with atomic_output(folder / _STATE_FILE) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
    except (OSError, TypeError, ValueError):
        pass


# ------------------------------------------------------------------ progress
def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``; ``"?"`` for unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf") or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_megapixels_rate(pixels: float, seconds: float) -> str:
    """Throughput text, e.g. ``"2.41 MP/s"``."""
    if seconds <= 0:
        return "? MP/s"
    return f"{pixels / 1e6 / seconds:.2f} MP/s"


@dataclass
class ProgressClock:
    """Tracks ``(done, total)`` updates of one run and estimates the time left.

    The ETA is the work left times the slower of two rates: the rate since the
    first update, and the rate since :meth:`start` (model loading included).
    The first is right once the run is steady; the second keeps the first
    estimates of a run from being optimistic (a first batch that came back
    quickly, a machine that gets busier), and fades as the run goes on.
    """

    clock: Callable[[], float] = time.perf_counter
    started: float = field(default=0.0)
    first_update: float | None = None
    first_done: float = 0.0
    done: float = 0.0
    total: float = 0.0

    def start(self) -> None:
        self.started = self.clock()
        self.first_update = None
        self.done = self.total = self.first_done = 0.0

    def update(self, done: float, total: float) -> None:
        now = self.clock()
        if self.first_update is None:
            self.first_update, self.first_done = now, done
        self.done, self.total = float(done), float(total)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, or ``None`` before there is a rate to extrapolate."""
        if self.first_update is None or self.total <= 0:
            return None
        work = self.done - self.first_done
        spent = self.clock() - self.first_update
        if work <= 0 or spent <= 0:
            return None
        per_unit = max(spent / work, (self.clock() - self.started) / self.done)
        return (self.total - self.done) * per_unit

    def text(self, unit: str = "tiles") -> str:
        """E.g. ``"12/40 tiles, 0:07 left"``."""
        eta = self.eta()
        left = f", {format_seconds(eta)} left" if eta is not None else ""
        return f"{int(self.done)}/{int(self.total)} {unit}{left}"


# ------------------------------------------------------------------ layer picker
def image_layer_choices(viewer: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` for every image layer of ``viewer``, topmost first (as in the layer list)."""
    from napari.layers import Image

    return [(layer.name, layer) for layer in reversed(viewer.layers) if isinstance(layer, Image)]


def connect_layer_list(
    viewer: Any,
    callback: Callable[..., Any],
    owner: Any = None,
    on_active: Callable[..., Any] | None = None,
) -> Callable[[], None]:
    """Call ``callback`` whenever layers are added, removed, moved or renamed
    (and ``on_active`` when the selected layer changes).

    Returns a function that disconnects them. With ``owner`` (a QWidget), they
    are disconnected automatically when that widget is destroyed, so a closed
    dock widget is never called by the viewer again.
    """
    events = viewer.layers.events
    connections = [(events.inserted, callback), (events.removed, callback), (events.reordered, callback)]
    if hasattr(events, "renamed"):
        connections.append((events.renamed, callback))
    if on_active is not None:
        connections.append((viewer.layers.selection.events.active, on_active))
    for signal, slot in connections:
        signal.connect(slot)

    def disconnect(*_args: Any) -> None:
        for signal, slot in connections:
            try:
                signal.disconnect(slot)
            except (ValueError, RuntimeError):
                pass

    if owner is not None:
        owner.destroyed.connect(disconnect)
    return disconnect


# ------------------------------------------------------------------ scrolling dock
def scrollable_container_class() -> type:
    """A magicgui ``Container`` whose docked Qt widget is a scroll area.

    napari docks ``widget.native``; magicgui's ``scrollable=True`` puts the
    controls into a ``QScrollArea`` but keeps ``native`` pointing at the inner
    widget, so napari would dock the inner widget without the scroll area. Here
    ``native`` is the scroll area itself (what napari docks and what tests see),
    and :attr:`inner_layout` is the layout that holds the controls. The dock can
    then be shorter than its controls: a laptop screen keeps a usable canvas.
    """
    from magicgui.widgets import Container
    from qtpy.QtCore import QEvent, QObject

    class _ParentWatcher(QObject):
        """Calls ``callback(new parent)`` when the watched widget gets a new parent (or none)."""

        def __init__(self, callback: Callable[[Any], None]) -> None:
            super().__init__()
            self._callback = callback

        def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 (Qt API)
            if event.type() == QEvent.Type.ParentChange:
                self._callback(obj.parent())
            return False

    class ScrollableContainer(Container):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(scrollable=True, **kwargs)
            from qtpy.QtWidgets import QFrame

            self.root_native_widget.setFrameShape(QFrame.Shape.NoFrame)
            self._parent_watcher = _ParentWatcher(self.on_dock_parent_changed)
            self.root_native_widget.installEventFilter(self._parent_watcher)

        def reset_choices(self, *_args: Any) -> None:
            """Refresh the pickers whose choices come from the viewer (napari calls this whenever a
            layer is added). Radio buttons have fixed choices and are left alone: magicgui would
            rebuild them, and the old buttons, un-parented, showed up as stray windows once the dock
            was closed."""
            from magicgui.widgets import RadioButtons

            for widget in self:
                if hasattr(widget, "reset_choices") and not isinstance(widget, RadioButtons):
                    widget.reset_choices()

        def on_dock_parent_changed(self, parent: Any) -> None:
            """Called with the scroll area's new parent; ``None`` when napari closes the dock
            (it un-parents the widget rather than deleting it). Subclasses stop their run here."""

        @property
        def native(self) -> Any:  # the scroll area: napari docks it
            return self.root_native_widget

        @property
        def inner_layout(self) -> Any:
            """The QVBoxLayout holding the controls (inside the scroll area)."""
            return self.root_native_widget.widget().layout()

    return ScrollableContainer


# ------------------------------------------------------------------ model descriptions
_DEGRADATION_TEXT = {
    "gaussian": "Gaussian noise",
    "poisson_gaussian": "Poisson-Gaussian (camera) noise",
    "motion_blur": "motion blur",
    "rain": "rain streaks",
}


def parameter_count(path: Any) -> int | None:
    """Number of weights in a ``.safetensors`` file, from its header (no tensor is read)."""
    from napari_hinet.registry import read_safetensors_header

    if path is None or not str(path).endswith(".safetensors"):
        return None
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError):
        return None
    total = 0
    for key, entry in header.items():
        if key != "__metadata__" and isinstance(entry, dict):
            count = 1
            for n in entry.get("shape", []):
                count *= int(n)
            total += count
    return total


def model_card_text(info: Any) -> str:
    """A short model card for people, read from the model's metadata.

    Rules, in this order: 1. channels (gray or RGB); 2. training data
    (microscopy, photos, a fine-tune base); 3. degradation it learned; 4.
    measured quality (validation PSNR before -> after, and what it was
    measured against); 5. size and speed class (weights counted from the
    file header; more than 20 M weights is slow on a CPU). Parts that the
    metadata lacks are left out; the registry's one-line description (official
    checkpoints) comes first when there is one.
    """
    meta = info.metadata or {}
    parts: list[str] = []
    if info.description:
        parts.append(info.description.rstrip(".") + ".")
    parts.append("Gray (1-channel) images." if info.channels == "gray" else "RGB (colour) images.")
    training = meta.get("training") or {}
    data = training.get("data") or {}
    if training.get("base_model"):
        parts.append(f"Fine-tuned from {training['base_model']} ({training.get('mode', '?')} mode).")
    elif data:
        if data.get("microscopy") and data.get("natural_as_gray"):
            parts.append("Trained on microscopy and photos (as gray).")
        elif data.get("microscopy"):
            parts.append("Trained on microscopy images.")
        else:
            parts.append("Trained on natural photos.")
    degradation = data.get("degradation") or {}
    kind = degradation.get("kind") if isinstance(degradation, dict) else None
    if kind:
        parts.append(f"Degradation: {_DEGRADATION_TEXT.get(kind, kind)}.")
    metrics = meta.get("metrics") or {}
    best, start = metrics.get("val_psnr"), metrics.get("val_psnr_start")
    if isinstance(best, (int, float)):
        against = (
            metrics.get("val_reference")
            or metrics.get("val_target")
            or metrics.get("val_set")
            or "validation data"
        )
        if str(against).startswith("noisy"):
            against = f"against a {against}, not clean images"
        before = f"{start:.1f} → " if isinstance(start, (int, float)) else ""
        parts.append(f"Validation PSNR {before}{best:.1f} dB ({against}).")
    count = parameter_count(info.path)
    if count:
        speed = "slow on a CPU; a GPU is recommended" if count > 20e6 else "fast enough for a CPU"
        parts.append(f"{count / 1e6:.1f} M weights: {speed}.")
    return " ".join(parts)
