"""Make the screenshots in docs/images/ from a real napari window.

For each sample it opens napari, loads the sample (degraded image + clean twin),
docks the matching widget through the plugin manifest, takes a "before"
screenshot, clicks Run, waits for the worker, and takes an "after" screenshot
and a side-by-side comparison (napari's grid mode: degraded | restored | clean).
The comparison is made with the widget's **Compare** button. It also makes:
``denoise_tooltip.png`` (a control's tooltip, grabbed from the X screen since
tooltips are windows of their own), ``denoise_files.png`` (the Files… folder
mode after a run on a folder of three images) and the Fine-tune shots on a
laptop-size window (1280 x 800): ``finetune_before.png`` (top of the dock) and
``finetune_after.png`` (the dock scrolled to its plots after training).

Run it under a virtual X server on a headless machine::

    QT_API=pyqt6 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1200x24" \\
        .venv/bin/python docs/make_screenshots.py [--only denoise_fluo] [--out docs/images]

Models: each widget runs with the model it picks by default for the image (the
bundled model of the task for gray or RGB images), as a new user would;
``--model denoise_photo=hinet-denoise-photo`` overrides one. The script prints
the status line of every run (device, MP/s) so the numbers can be quoted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Shot:
    """One screenshot scenario."""

    key: str  # file name stem
    sample: str  # napari-hinet sample key
    widget: str  # widget display name
    model: str | None  # model to select (None: the widget's default)


SHOTS = [  # model None: what the widget picks by default for that image (as a new user would run it)
    Shot("denoise_fluo", "noisy_fluorescence", "Denoise", None),
    Shot("denoise_photo", "noisy_photo", "Denoise", None),
    Shot("deblur_photo", "blurred_photo", "Deblur", None),
    Shot("derain_photo", "rainy_photo", "Derain", None),
]
WINDOW = (1500, 900)
LAPTOP_WINDOW = (1280, 800)  # the docks scroll: a laptop screen keeps a usable canvas


def _process(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _wait(app, widget, timeout: float = 900.0) -> None:
    start = time.perf_counter()
    while widget.is_running:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"run did not finish in {timeout} s")
        app.processEvents()
        time.sleep(0.02)
    _process(app, 0.5)


def _fit(viewer, app) -> None:
    """Fit the data to the canvas once the docked widget has taken its width."""
    _process(app, 0.5)
    viewer.reset_view()
    _process(app, 0.2)


def _save(viewer, app, path: Path) -> None:
    _process(app, 0.3)
    viewer.screenshot(str(path), canvas_only=False)
    print(f"  wrote {path}")


def _new_viewer(app, size: tuple[int, int] = WINDOW):
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window.resize(*size)
    _process(app, 0.5)
    return viewer


def restore_shots(shot: Shot, out: Path, app) -> None:
    viewer = _new_viewer(app)
    viewer.open_sample("napari-hinet", shot.sample)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-hinet", shot.widget)
    if shot.model is not None:
        if shot.model not in list(widget.model.choices):
            raise SystemExit(
                f"Model {shot.model!r} is not available; models offered: {list(widget.model.choices)}"
            )
        widget.model.value = shot.model
    degraded = viewer.layers[-1]
    widget.image.value = degraded
    _fit(viewer, app)
    _save(viewer, app, out / f"{shot.key}_before.png")

    widget.run_button.clicked.emit()  # what a click does
    _process(app, 0.2)
    _wait(app, widget)
    print(f"  {shot.widget} on {degraded.name!r}: {widget.status.value}")
    if widget.status.value.startswith("Error"):
        raise SystemExit(f"{shot.key}: {widget.status.value}")
    _save(viewer, app, out / f"{shot.key}_after.png")

    # side by side, left to right: degraded | restored | clean, with the widget's Compare button
    widget.compare_button.clicked.emit()
    _fit(viewer, app)
    _save(viewer, app, out / f"{shot.key}_compare.png")
    viewer.close()


def finetune_shot(out: Path, app, steps: int) -> None:
    viewer = _new_viewer(app, LAPTOP_WINDOW)
    viewer.open_sample("napari-hinet", "noisy_fluorescence")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-hinet", "Fine-tune")
    widget.screenshot_setup(steps=steps)
    _fit(viewer, app)
    print(f"  window {viewer.window._qt_window.width()} x {viewer.window._qt_window.height()}")
    _save(viewer, app, out / "finetune_before.png")
    widget.start()
    _wait(app, widget, timeout=1800)
    print(f"  Fine-tune: {widget.status.value}")
    bar = widget.native.verticalScrollBar()  # the dock is a scroll area: show its plots and status
    bar.setValue(bar.maximum())
    _save(viewer, app, out / "finetune_after.png")
    viewer.close()


def tooltip_shot(out: Path, app) -> None:
    """The Denoise dock with the tooltip of its Tile size control (grabbed from the screen)."""
    from qtpy.QtWidgets import QToolTip

    viewer = _new_viewer(app)
    viewer.open_sample("napari-hinet", "noisy_fluorescence")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-hinet", "Denoise")
    _fit(viewer, app)
    control = widget.tile.native
    QToolTip.showText(control.mapToGlobal(control.rect().center()), widget.tile.tooltip, control)
    _process(app, 0.5)
    window = viewer.window._qt_window
    corner = window.mapToGlobal(window.rect().topLeft())
    shot = app.primaryScreen().grabWindow(0, corner.x(), corner.y(), window.width(), window.height())
    shot.save(str(out / "denoise_tooltip.png"))
    print(f"  wrote {out / 'denoise_tooltip.png'}")
    QToolTip.hideText()
    viewer.close()


def files_shot(out: Path, app) -> None:
    """The Denoise dock in Files… mode after restoring a folder of three images."""
    import numpy as np
    import tifffile

    from napari_hinet._sample_data import noisy_fluorescence

    folder = Path(tempfile.mkdtemp(prefix="hinet-shots-files-")) / "nuclei"
    folder.mkdir()
    noisy = next(data for data, kwargs, _ in noisy_fluorescence() if "noisy" in kwargs["name"])
    tifffile.imwrite(folder / "nuclei_full.tif", np.asarray(noisy))
    tifffile.imwrite(folder / "nuclei_top_left.tif", np.asarray(noisy)[:256, :256])
    tifffile.imwrite(folder / "nuclei_bottom_right.tif", np.asarray(noisy)[256:, 256:])
    viewer = _new_viewer(app)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-hinet", "Denoise")
    widget.source.value = "files"
    widget.input_folder.value = folder
    widget.run_button.clicked.emit()
    _process(app, 0.2)
    _wait(app, widget)
    print(f"  Files: {widget.status.value}")
    _fit(viewer, app)
    _save(viewer, app, out / "denoise_files.png")
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "images", help="output folder (docs/images)")
    parser.add_argument(
        "--only", nargs="*", help="shot keys to make (default: all), e.g. denoise_fluo finetune"
    )
    parser.add_argument(
        "--model", action="append", default=[], help="KEY=MODEL override, e.g. deblur_photo=x"
    )
    parser.add_argument(
        "--finetune-steps", type=int, default=60, help="training steps for the Fine-tune shot"
    )
    args = parser.parse_args(argv)

    # never touch the user's saved widget settings or models folder (the Fine-tune shot saves a model);
    # the widgets then offer the bundled models, as on a fresh install
    os.environ.setdefault("NAPARI_HINET_CONFIG_DIR", tempfile.mkdtemp(prefix="hinet-shots-config-"))
    os.environ.setdefault("HINET_MODELS_DIR", tempfile.mkdtemp(prefix="hinet-shots-models-"))
    overrides = dict(item.split("=", 1) for item in args.model)
    args.out.mkdir(parents=True, exist_ok=True)

    from napari.qt import get_qapp

    app = get_qapp()
    wanted = set(args.only or [s.key for s in SHOTS] + ["tooltip", "files", "finetune"])
    for shot in SHOTS:
        if shot.key in wanted:
            model = overrides.get(shot.key, shot.model)
            print(f"{shot.key}: sample {shot.sample}, widget {shot.widget}, model {model or '(default)'}")
            restore_shots(Shot(shot.key, shot.sample, shot.widget, model), args.out, app)
    if "tooltip" in wanted:
        print("tooltip:")
        tooltip_shot(args.out, app)
    if "files" in wanted:
        print("files:")
        files_shot(args.out, app)
    if "finetune" in wanted:
        print("finetune:")
        finetune_shot(args.out, app, args.finetune_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
