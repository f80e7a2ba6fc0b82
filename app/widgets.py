"""The app's drawing widgets: the live preview, probability bars and the overlay window.

They only draw what an ``ExpressionState`` says; none of them touches a model or a source.
Painting happens in ``paintEvent`` (Qt coalesces ``update()`` calls), so a burst of states
costs one repaint per screen refresh at most.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PyQt6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF
from PyQt6.QtWidgets import QSizePolicy, QWidget

from vrfer.core.preprocess import CANONICAL_SIZE
from vrfer.core.types import ExpressionState

CLASS_COLOURS: dict[str, str] = {
    "neutral": "#9aa5b1", "happiness": "#f5c542", "surprise": "#f08c2e", "sadness": "#4a8fe7",
    "anger": "#e5484d", "disgust": "#46a758", "fear": "#8e4ec6", "contempt": "#12a594",
}
FALLBACK_COLOUR = "#7c8a99"
PIP_SCALE = 4  # the model's 48x24 input shown at 192x96, pixel for pixel
MIN_ROI_PX = 8  # a smaller drag is a click, not a rectangle


def class_colour(name: str) -> QColor:
    return QColor(CLASS_COLOURS.get(name, FALLBACK_COLOUR))


def shape_label(name: str) -> str:
    """A mouth shape's short name for a bar: ``mouth_smile_left`` -> ``smile_left``."""
    return name.removeprefix("mouth_")


def numpy_to_qimage(image: np.ndarray) -> QImage:
    """Wrap (not copy) a BGR or grey uint8 array; the array must outlive the QImage's use."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    if image.ndim == 2:
        return QImage(image.data, w, h, image.strides[0], QImage.Format.Format_Grayscale8)
    return QImage(image.data, w, h, image.strides[0], QImage.Format.Format_BGR888)


class PreviewWidget(QWidget):
    """The frame with the face box, landmarks, the occlusion line and the model's input (PiP).

    In ROI mode a left-button drag draws a rectangle; ``roi_drawn`` gives it in frame pixels.
    """

    roi_drawn = pyqtSignal(object)  # (x, y, w, h) ints, frame pixels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self._image: np.ndarray | None = None
        self._state: ExpressionState | None = None
        self._placeholder = "No source running"
        self.roi_editing = False
        self.roi: tuple[int, int, int, int] | None = None
        self._drag: tuple[QPointF, QPointF] | None = None  # frame coordinates

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    # -- data -----------------------------------------------------------------------------

    def set_state(self, state: ExpressionState) -> None:
        if state.image is not None:
            self._image = state.image
        self._state = state
        self.update()

    def clear(self, placeholder: str) -> None:
        self._image, self._state, self._placeholder = None, None, placeholder
        self.update()

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the last frame shown."""
        return None if self._image is None else (self._image.shape[1], self._image.shape[0])

    # -- geometry -------------------------------------------------------------------------

    def image_rect(self) -> QRectF:
        """Where the frame is drawn: aspect-preserving fit, centred."""
        size = self.frame_size
        if size is None:
            return QRectF(self.rect())
        fw, fh = size
        scale = min(self.width() / fw, self.height() / fh)
        w, h = fw * scale, fh * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _scale(self) -> float:
        size = self.frame_size
        return self.image_rect().width() / size[0] if size else 1.0

    def frame_to_widget(self, x: float, y: float) -> QPointF:
        """Frame pixel coordinates (edges at integers) -> widget coordinates."""
        r = self.image_rect()
        s = self._scale()
        return QPointF(r.x() + x * s, r.y() + y * s)

    def widget_to_frame(self, p: QPointF) -> QPointF:
        r = self.image_rect()
        s = self._scale()
        w, h = self.frame_size or (0, 0)
        return QPointF(min(max((p.x() - r.x()) / s, 0.0), w), min(max((p.y() - r.y()) / s, 0.0), h))

    # -- ROI drag -------------------------------------------------------------------------

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if self.roi_editing and self.frame_size and ev.button() == Qt.MouseButton.LeftButton:
            p = self.widget_to_frame(ev.position())
            self._drag = (p, p)
            self.update()
        else:
            super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        if self._drag is not None:
            self._drag = (self._drag[0], self.widget_to_frame(ev.position()))
            self.update()
        else:
            super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        if self._drag is None or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseReleaseEvent(ev)
            return
        a, _ = self._drag
        b = self.widget_to_frame(ev.position())
        self._drag = None
        x0, x1 = sorted((round(a.x()), round(b.x())))
        y0, y1 = sorted((round(a.y()), round(b.y())))
        if x1 - x0 >= MIN_ROI_PX and y1 - y0 >= MIN_ROI_PX:
            self.roi = (x0, y0, x1 - x0, y1 - y0)
            self.roi_drawn.emit(self.roi)
        self.update()

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, ev: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#15181c"))
        image = self._image
        if image is None:
            p.setPen(QColor("#c9d1d9"))
            p.drawText(self.rect().adjusted(20, 20, -20, -20),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.drawImage(self.image_rect(), numpy_to_qimage(image))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        state = self._state
        if state is not None and state.geometry is not None:
            self._paint_geometry(p, state)
        if self.roi_editing or (self.roi is not None and state is not None and state.geometry is not None
                                and state.geometry.path == "roi"):
            self._paint_roi(p)
        if state is not None and state.crop is not None:
            self._paint_pip(p, state.crop)

    def _paint_geometry(self, p: QPainter, state: ExpressionState) -> None:
        g = state.geometry
        x, y, w, h = g.box
        colour = QColor("#3ddc84") if g.path != "roi" else QColor("#f5c542")
        p.setPen(QPen(colour, 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(QRectF(self.frame_to_widget(x, y), self.frame_to_widget(x + w, y + h)))
        if g.landmarks is not None and len(g.landmarks):
            p.setPen(QPen(QColor(120, 220, 255, 200), 2.0))
            r, k = self.image_rect(), self._scale()
            pts = (np.asarray(g.landmarks, np.float64)[:, :2] + 0.5) * k + (r.x(), r.y())
            p.drawPoints(QPolygonF([QPointF(u, v) for u, v in pts.tolist()]))
        # The occlusion line: the canonical face's midline mapped back into the frame. The
        # model never sees what is above it (the headset's side). A mouth-camera ROI *is* the
        # lower half, so there is nothing above it to draw.
        inv = _invert_affine(np.asarray(g.transform, np.float64))
        if inv is None or g.path == "roi":
            return
        mid = CANONICAL_SIZE / 2 - 0.5  # between rows 23 and 24, pixel-centre convention
        left = inv @ np.array([-0.5, mid, 1.0])
        right = inv @ np.array([CANONICAL_SIZE - 0.5, mid, 1.0])
        top_l = inv @ np.array([-0.5, -0.5, 1.0])
        top_r = inv @ np.array([CANONICAL_SIZE - 0.5, -0.5, 1.0])
        shade = QPolygonF([self.frame_to_widget(*(v + 0.5)) for v in (top_l, top_r, right, left)])
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 90))
        p.drawPolygon(shade)
        pen = QPen(QColor("#ff6b6b"), 2, Qt.PenStyle.DashLine)
        p.setPen(pen)
        a, b = self.frame_to_widget(*(left + 0.5)), self.frame_to_widget(*(right + 0.5))
        p.drawLine(a, b)
        p.setFont(_font(8))
        p.drawText(a + QPointF(4, -4), "occluded above")

    def _paint_roi(self, p: QPainter) -> None:
        pen = QPen(QColor("#f5c542"), 2, Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        if self._drag is not None:
            a, b = self._drag
            p.drawRect(QRectF(self.frame_to_widget(a.x(), a.y()), self.frame_to_widget(b.x(), b.y())).normalized())
        elif self.roi is not None:
            x, y, w, h = self.roi
            p.drawRect(QRectF(self.frame_to_widget(x, y), self.frame_to_widget(x + w, y + h)))
        if self.roi_editing and self._drag is None:
            p.setFont(_font(9))
            p.setPen(QColor("#f5c542"))
            p.drawText(QRectF(self.image_rect()).adjusted(8, 6, -8, -6),
                       Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
                       "drag a rectangle around the mouth" if self.roi is None else
                       "mouth region (drag to change it)")

    def _paint_pip(self, p: QPainter, crop: np.ndarray) -> None:
        h, w = crop.shape[:2]
        s = PIP_SCALE
        while s > 1 and (w * s > self.width() / 3 or h * s > self.height() / 3):
            s -= 1
        target = QRectF(self.width() - w * s - 10, self.height() - h * s - 26, w * s, h * s)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)  # show the exact pixels
        p.fillRect(target.adjusted(-3, -3, 3, 20), QColor(0, 0, 0, 170))
        p.drawImage(target, numpy_to_qimage(crop))
        p.setPen(QColor("#e6edf3"))
        p.setFont(_font(8))
        p.drawText(QRectF(target.left(), target.bottom() + 2, target.width(), 16),
                   Qt.AlignmentFlag.AlignCenter, f"model input {w}x{h}")


def _invert_affine(m: np.ndarray) -> np.ndarray | None:
    a = np.vstack([m.reshape(2, 3), [0.0, 0.0, 1.0]])
    try:
        return np.linalg.inv(a)[:2]
    except np.linalg.LinAlgError:
        return None


def _font(points: int, bold: bool = False) -> QFont:
    f = QFont()
    f.setPointSize(points)
    f.setBold(bold)
    return f


class ProbabilityBars(QWidget):
    """One horizontal bar per class, the current label highlighted. Plain QPainter: cheap."""

    def __init__(self, parent: QWidget | None = None, *, compact: bool = False, on_dark: bool | None = None) -> None:
        super().__init__(parent)
        self._classes: tuple[str, ...] = ()
        self._probs: dict[str, float] = {}
        self._label: str | None = None
        self._compact = compact
        self._on_dark = compact if on_dark is None else on_dark  # the overlay is dark; the window is not
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        n = max(len(self._classes), 8)
        return QSize(240, n * (16 if self._compact else 22) + 4)

    def minimumSizeHint(self) -> QSize:
        return QSize(160, self.sizeHint().height())

    def set_probs(self, probs: Mapping[str, float], label: str | None) -> None:
        if tuple(probs) and tuple(probs) != self._classes:
            self._classes = tuple(probs)
            self.updateGeometry()
        self._probs = dict(probs)
        self._label = label
        self.update()

    def set_classes(self, classes: Sequence[str]) -> None:
        self._classes = tuple(classes)
        self._probs = {}
        self._label = None
        self.updateGeometry()
        self.update()

    @property
    def values(self) -> dict[str, float]:
        return dict(self._probs)

    def paintEvent(self, ev: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        n = len(self._classes)
        if not n:
            return
        row = self.height() / n
        name_w = 84  # "stretch_right" fits at the compact font too
        pct_w = 40
        p.setFont(_font(8 if self._compact else 9))
        text = QColor("#e6edf3") if self._on_dark else self.palette().windowText().color()
        for i, c in enumerate(self._classes):
            v = max(0.0, min(1.0, self._probs.get(c, 0.0)))
            y = i * row
            bar_h = row * 0.62
            track = QRectF(name_w, y + (row - bar_h) / 2, max(0.0, self.width() - name_w - pct_w - 4), bar_h)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(128, 128, 128, 60))
            p.drawRoundedRect(track, 3, 3)
            colour = class_colour(c)
            if c != self._label:
                colour.setAlpha(150)
            p.setBrush(colour)
            p.drawRoundedRect(QRectF(track.x(), track.y(), track.width() * v, track.height()), 3, 3)
            p.setPen(text)
            f = p.font()
            f.setBold(c == self._label)
            p.setFont(f)
            p.drawText(QRectF(0, y, name_w - 6, row), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, c)
            p.drawText(QRectF(self.width() - pct_w, y, pct_w, row),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, f"{v * 100:.0f}%")


class OverlayWindow(QWidget):
    """Frameless, translucent, always-on-top: the label and the bars, for streaming over a game.

    Drag it anywhere with the left button; ``moved`` reports where it was left.
    """

    moved = pyqtSignal(int, int)

    def __init__(self, opacity: float = 0.85) -> None:
        super().__init__(None, Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint
                         | Qt.WindowType.Tool)
        self.setAttribute(Qt.WidgetAttribute.WA_TranslucentBackground, True)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, True)
        self.setWindowTitle("vrfer overlay")
        self._opacity = opacity
        self._label = "—"
        self._detail = "waiting for frames"
        self.bars = ProbabilityBars(self, compact=True)
        self.shape_bars = ProbabilityBars(self, compact=True)  # the mouth shapes, with a shapes model
        self.shape_bars.setVisible(False)
        self.resize(280, 200)
        self._press: QPoint | None = None

    @property
    def label_text(self) -> str:
        return self._label

    def set_state(self, state: ExpressionState) -> None:
        if state.label is not None:
            self._label, self._detail = state.label, f"{state.confidence * 100:.0f}%"
        else:
            self._label, self._detail = "no face", state.message or ""
        self.bars.set_probs(state.probs, state.label)
        if state.shapes and not self.shape_bars.isVisible():
            self.shape_bars.setVisible(True)
            self.resize(self.width(), self.height() + 16 * len(state.shapes) + 8)
        if state.shapes:
            self.shape_bars.set_probs({shape_label(n): v for n, v in state.shapes.items()}, None)
        self.update()

    def resizeEvent(self, ev) -> None:  # noqa: ANN001 - Qt's signature
        if self.shape_bars.isVisible():
            shapes_h = 16 * len(self.shape_bars.values or [0] * 14) + 4
            self.bars.setGeometry(10, 54, self.width() - 20, self.height() - 64 - shapes_h - 4)
            self.shape_bars.setGeometry(10, self.height() - 10 - shapes_h, self.width() - 20, shapes_h)
        else:
            self.bars.setGeometry(10, 54, self.width() - 20, self.height() - 64)
        super().resizeEvent(ev)

    def paintEvent(self, ev: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(16, 18, 22, round(255 * self._opacity)))
        p.drawRoundedRect(QRectF(self.rect()), 12, 12)
        p.setPen(class_colour(self._label) if self._label in CLASS_COLOURS else QColor("#e6edf3"))
        p.setFont(_font(17, bold=True))
        p.drawText(QRect(14, 8, self.width() - 28, 40), Qt.AlignmentFlag.AlignVCenter, self._label)
        p.setPen(QColor("#c9d1d9"))
        p.setFont(_font(10))
        p.drawText(QRect(14, 8, self.width() - 28, 40),
                   Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, self._detail[:40])

    def mousePressEvent(self, ev: QMouseEvent) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            self._press = ev.globalPosition().toPoint() - self.frameGeometry().topLeft()

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:
        if self._press is not None:
            self.move(ev.globalPosition().toPoint() - self._press)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:
        if self._press is not None:
            self._press = None
            self.moved.emit(self.x(), self.y())
