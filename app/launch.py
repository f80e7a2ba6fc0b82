"""Start the app: the interactive window, or a headless screenshot of it.

``screenshot`` mode runs the real window (offscreen unless a platform is forced), waits for
``after_frames`` processed frames and a drawn state, saves a PNG of the window and returns 0.
It never writes the user's settings. Failures (no model, a source that does not open, no
frames in time) raise ``VrferError`` after the event loop has ended, so the CLI prints one line.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from vrfer.core.errors import VrferError

SCREENSHOT_POLL_MS = 50


def run_app(*, source: str | None = None, model: str | None = None, screenshot: Path | None = None,
            after_frames: int = 30, timeout: float = 60.0) -> int:
    if screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from vrfer.app.window import MainWindow

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationName("vrfer")
    window = MainWindow(source=source, model=model, persist=screenshot is None,
                        enumerate_cameras=screenshot is None)
    window.show()
    if screenshot is None:
        return qapp.exec()

    failure: list[str] = []
    deadline = time.monotonic() + timeout

    def failed(spec: str, message: str) -> None:
        failure.append(message)
        qapp.exit(2)

    def check() -> None:
        if window.bridge.frames >= after_frames and window.displayed > 0:
            latest = window.bridge.take_latest()
            if latest is not None:
                window.show_state(latest)  # the newest frame, drawn now
            window._poll()
            out = Path(screenshot)
            out.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(out), "PNG"):
                failure.append(f"could not write {out}")
                qapp.exit(2)
                return
            qapp.exit(0)
        elif time.monotonic() > deadline:
            status = "; ".join(window.problems.values()) or f"{window.bridge.frames} frames so far"
            failure.append(f"no {after_frames} processed frames within {timeout:g} s ({status})")
            qapp.exit(2)
        elif not window._running and window.bridge.frames < after_frames and window.problems.get("ended"):
            failure.append(window.problems["ended"])
            qapp.exit(2)

    window.bridge.start_failed.connect(failed)
    timer = QTimer(interval=SCREENSHOT_POLL_MS)
    timer.timeout.connect(check)
    timer.start()
    code = qapp.exec()
    timer.stop()
    window.close()
    if failure:
        raise VrferError(failure[0])
    return code
