"""Small Qt painters for the Fine-tune widget: a line plot and a before/after image strip.

Plain ``QPainter`` drawing, so the plugin needs no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap
from qtpy.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget


def _nice(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if float(value).is_integer() and abs(value) < 1e7:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.2g}"


class CurvePlot(QWidget):
    """A line plot of one series (x = training step), with its title, last value and y range.

    ``set_data(xs, ys)`` replaces the series; ``points`` returns it (for tests).
    """

    def __init__(self, title: str, color: str, unit: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._title = title
        self._color = QColor(color)
        self._unit = unit
        self._xs: list[float] = []
        self._ys: list[float] = []
        self.setMinimumSize(160, 110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    @property
    def title(self) -> str:
        return self._title

    def set_title(self, title: str) -> None:
        self._title = title
        self.update()

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(zip(self._xs, self._ys, strict=True))

    def set_data(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        pairs = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(float(y))]
        self._xs = [p[0] for p in pairs]
        self._ys = [p[1] for p in pairs]
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(self.foregroundRole())
        frame = QRectF(self.rect()).adjusted(44, 18, -6, -16)
        painter.setPen(QPen(text, 1))
        last = f": {_nice(self._ys[-1])}{self._unit}" if self._ys else ""
        painter.drawText(QRectF(0, 0, self.width(), 16), Qt.AlignmentFlag.AlignHCenter, self._title + last)
        grid = QColor(text)
        grid.setAlpha(70)
        painter.setPen(QPen(grid, 1))
        painter.drawRect(frame)
        if not self._ys:
            painter.end()
            return
        x0, x1 = min(self._xs), max(self._xs)
        y0, y1 = min(self._ys), max(self._ys)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 == y0:
            pad = abs(y0) * 0.05 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        painter.setPen(QPen(text, 1))
        small = painter.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.8))
        painter.setFont(small)
        painter.drawText(QRectF(0, frame.top() - 6, 42, 14), Qt.AlignmentFlag.AlignRight, _nice(y1))
        painter.drawText(QRectF(0, frame.bottom() - 8, 42, 14), Qt.AlignmentFlag.AlignRight, _nice(y0))
        painter.drawText(
            QRectF(frame.left(), frame.bottom() + 1, 60, 14), Qt.AlignmentFlag.AlignLeft, _nice(x0)
        )
        painter.drawText(
            QRectF(frame.right() - 60, frame.bottom() + 1, 60, 14), Qt.AlignmentFlag.AlignRight, _nice(x1)
        )

        def to_screen(x: float, y: float) -> QPointF:
            return QPointF(
                frame.left() + (x - x0) / (x1 - x0) * frame.width(),
                frame.bottom() - (y - y0) / (y1 - y0) * frame.height(),
            )

        path = QPainterPath(to_screen(self._xs[0], self._ys[0]))
        for x, y in zip(self._xs[1:], self._ys[1:], strict=True):
            path.lineTo(to_screen(x, y))
        painter.setPen(QPen(self._color, 1.6))
        painter.drawPath(path)
        if len(self._xs) < 40:  # mark sparse points (validation)
            painter.setBrush(self._color)
            for x, y in zip(self._xs, self._ys, strict=True):
                painter.drawEllipse(to_screen(x, y), 2.5, 2.5)
        painter.end()


def to_qimage(image: np.ndarray) -> QImage:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` float in [0, 1] (or uint8) -> an 8-bit QImage (copied)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    height, width = arr.shape[:2]
    if arr.ndim == 2:
        fmt, line = QImage.Format.Format_Grayscale8, width
    elif arr.shape[2] == 3:
        fmt, line = QImage.Format.Format_RGB888, 3 * width
    else:
        raise ValueError(f"cannot show an image of shape {arr.shape}")
    return QImage(arr.data, width, height, line, fmt).copy()


class PreviewStrip(QWidget):
    """Three small images side by side with captions: input | current output | target."""

    CAPTIONS = ("input", "output (current model)", "target")

    def __init__(self, size: int = 110, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._size = size
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.images: list[QLabel] = []
        self.captions: list[QLabel] = []
        for column, caption in enumerate(self.CAPTIONS):
            picture = QLabel()
            picture.setFixedSize(size, size)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setStyleSheet("border: 1px solid rgba(128, 128, 128, 90);")
            label = QLabel(caption)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            layout.addWidget(picture, 0, column)
            layout.addWidget(label, 1, column)
            self.images.append(picture)
            self.captions.append(label)
        self.setMinimumHeight(size + 24)  # images + captions, never squeezed
        self.shown_step: int | None = None

    def set_captions(self, captions: Sequence[str]) -> None:
        for label, text in zip(self.captions, captions, strict=True):
            label.setText(text)

    def set_images(self, step: int, inputs: np.ndarray, output: np.ndarray, target: np.ndarray) -> None:
        for picture, image in zip(self.images, (inputs, output, target), strict=True):
            pixmap = QPixmap.fromImage(to_qimage(image))
            picture.setPixmap(
                pixmap.scaled(
                    self._size,
                    self._size,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.FastTransformation,
                )
            )
        self.shown_step = step
