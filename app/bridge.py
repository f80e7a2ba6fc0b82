"""Qt is a bridge: core's threaded pipeline on one side, signals for the UI on the other.

* The pipeline calls ``_on_state`` on its inference thread. That callback only counts the
  frame, hands it to the avatar sinks (whose ``send`` never blocks), keeps it as the newest
  state and emits ``state`` -- but only when the UI has taken the previous one, so a pipeline
  running at hundreds of frames per second queues at most one event on the UI thread.
* Anything slow -- loading the model, opening a camera or stream, starting mediapipe,
  stopping (which joins threads), creating a sink -- runs as a job on one worker thread, in
  the order asked. Job failures arrive as ``error``; nothing here raises into a widget.
* Runtime settings (face/ROI, smoothing, calibration) go straight to ``Pipeline.update``,
  which swaps in a new frozen config between frames.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from PyQt6.QtCore import QObject, pyqtSignal

from vrfer.core.avatar.status import Sink
from vrfer.core.errors import VrferError
from vrfer.core.pipeline import Pipeline, PipelineConfig
from vrfer.core.types import ExpressionState

log = logging.getLogger("vrfer.app")

RUNTIME_FIELDS = ("face", "smoothing", "calibration")


class PipelineBridge(QObject):
    state = pyqtSignal(object)  # the newest ExpressionState (intermediate ones may be skipped)
    error = pyqtSignal(str)  # one line for the status bar / banner
    started = pyqtSignal(str)  # source spec, once frames can flow
    start_failed = pyqtSignal(str, str)  # source spec, one-line reason (model missing, no camera...)
    stopped = pyqtSignal(str)  # why: "" when asked to stop, else e.g. "source ended"
    cameras = pyqtSignal(object)  # list[core.sources.CameraInfo]

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vrfer-app-job")
        self._lock = threading.Lock()
        self._cfg = PipelineConfig()
        self._pipeline: Pipeline | None = None
        self._latest: ExpressionState | None = None
        self._pending = False
        self._frames = 0  # states with a processed frame since the last start
        self._sinks: tuple = ()
        self._collectors: tuple[Callable[[ExpressionState], None], ...] = ()
        self._closed = False
        self._accepting = False  # False from the moment a stop begins until the next start

    # -- from the pipeline's thread ---------------------------------------------------

    def _on_state(self, state: ExpressionState) -> None:
        if not self._accepting:  # a state still in flight from a pipeline being stopped
            return
        for sink in self._sinks:
            sink.send(state)
        for collect in self._collectors:
            collect(state)
        with self._lock:
            if state.frame_index >= 0:
                self._frames += 1
            self._latest = state
            if self._pending:
                return
            self._pending = True
        self.state.emit(state)

    # -- for the UI thread ------------------------------------------------------------

    def take_latest(self) -> ExpressionState | None:
        """The newest state; call from the ``state`` slot so the next one gets emitted."""
        with self._lock:
            self._pending = False
            return self._latest

    @property
    def frames(self) -> int:
        with self._lock:
            return self._frames

    @property
    def config(self) -> PipelineConfig:
        return self._cfg

    @property
    def pipeline(self) -> Pipeline | None:
        return self._pipeline

    @property
    def running(self) -> bool:
        p = self._pipeline
        return p is not None and p.running

    def start(self, cfg: PipelineConfig) -> Future:
        """Stop whatever runs and start a pipeline on ``cfg`` (in the worker)."""
        with self._lock:
            self._cfg = cfg
        return self._submit(self._start_job, cfg)

    def stop(self) -> Future:
        return self._submit(self._stop_job, "")

    def update(self, **changes: object) -> None:
        """Change runtime settings now (if running) and for every later start."""
        bad = sorted(set(changes) - set(RUNTIME_FIELDS))
        if bad:
            raise ValueError(f"not a runtime setting: {bad[0]}")
        with self._lock:
            self._cfg = dataclasses.replace(self._cfg, **changes)
            p = self._pipeline
        if p is not None:
            try:
                p.update(**changes)
            except VrferError as exc:
                self.error.emit(str(exc))

    def set_sinks(self, build: Callable[[], list[Sink]]) -> Future:
        """Replace the avatar sinks with the ones ``build`` makes (in the worker), e.g.
        ``lambda: make_sinks(cfg)`` from ``core.avatar.sinks``."""
        return self._submit(self._sinks_job, build)

    def sink_statuses(self) -> list:
        return [s.status() for s in self._sinks]

    def add_collector(self, cb: Callable[[ExpressionState], None]) -> Callable[[], None]:
        """Call ``cb(state)`` on the pipeline thread for every state (e.g. a neutral capture)."""
        with self._lock:
            self._collectors = self._collectors + (cb,)

        def remove() -> None:
            with self._lock:
                self._collectors = tuple(c for c in self._collectors if c is not cb)
        return remove

    def list_cameras(self) -> Future:
        """Enumerate cameras in the worker, so that it never opens a camera a pipeline is opening."""
        def work() -> None:
            from vrfer.core.sources import list_cameras
            found = list_cameras()
            if not self._closed:
                self.cameras.emit(found)
        return self._submit(work)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the pipeline and sinks and end the worker; blocks up to about ``timeout``."""
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(self._stop_job, "").result(timeout)
            self._submit(self._sinks_job, list).result(timeout)
        except Exception as exc:  # shutting down: say so, but never hang the exit
            log.warning("app shutdown: %s", exc)
        self._jobs.shutdown(wait=False, cancel_futures=True)

    # -- jobs (worker thread) -------------------------------------------------------------

    def _submit(self, fn: Callable, *args: object) -> Future:
        def job() -> object:
            try:
                return fn(*args)
            except VrferError as exc:
                self.error.emit(str(exc))
            except Exception as exc:  # a bug: keep the traceback in the log, the app keeps running
                log.exception("app job %s failed", getattr(fn, "__name__", fn))
                self.error.emit(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}")
            return None
        return self._jobs.submit(job)

    def _start_job(self, cfg: PipelineConfig) -> None:
        self._stop_job("")
        with self._lock:
            runtime = {k: getattr(self._cfg, k) for k in RUNTIME_FIELDS}
        # Calibration is applied after start: a stale one (from another model) must not keep the
        # pipeline from starting, only be reported.
        p = Pipeline(dataclasses.replace(cfg, **{**runtime, "calibration": None}))
        p.subscribe(self._on_state)
        with self._lock:
            self._frames = 0
            self._latest = None
            self._accepting = True
        try:
            p.start()
        except VrferError as exc:
            self._accepting = False
            self.start_failed.emit(cfg.source, str(exc))
            return
        with self._lock:
            self._pipeline = p
            runtime = {k: getattr(self._cfg, k) for k in RUNTIME_FIELDS}  # changes made meanwhile
        try:
            p.update(**runtime)
        except VrferError as exc:
            p.update(**{**runtime, "calibration": None})
            self.error.emit(f"calibration not applied: {exc}")
        threading.Thread(target=self._watch, args=(p,), name="vrfer-app-watch", daemon=True).start()
        self.started.emit(cfg.source)

    def _watch(self, p: Pipeline) -> None:
        """Say when a pipeline ends by itself (a file's end, a source that failed for good)."""
        p.wait()
        with self._lock:
            mine = self._pipeline is p  # a stop() clears it first, so this end was not asked for
            if mine:
                self._pipeline = None
        if mine:
            stats = p.stats
            latest = self._latest
            why = (latest.message if latest is not None and latest.message else None) or stats.last_error
            self.stopped.emit(why or "source ended")

    def _stop_job(self, reason: str) -> None:
        with self._lock:
            p, self._pipeline = self._pipeline, None
            self._accepting = False
        if p is None:
            return
        if not p.stop(timeout=2.0):
            log.warning("pipeline threads did not stop within 2 s")
        self.stopped.emit(reason)

    def _sinks_job(self, build: Callable[[], list[Sink]]) -> None:
        old, self._sinks = self._sinks, ()
        for sink in old:
            sink.close()
        self._sinks = tuple(build())

