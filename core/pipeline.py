"""The real-time runtime: a capture thread and an inference thread, results to subscribers.

::

    capture thread:   source.read() ──► one-frame slot ──► inference thread:
                      live: newest wins (stale frames      locate → preprocess → model →
                      are dropped and counted);            calibration → smoother → hysteresis
                      files/folders/demo: read when the         │
                      inference thread asks, every frame        ▼
                      in order, none dropped
                                                          ExpressionState ──► subscribers

Settings are a frozen ``PipelineConfig``; ``update(**changes)`` swaps in a new one, which
the inference thread picks up between frames. No thread polls shared mutable settings.
Subscribers are called on the inference thread and must not block for long (the app's
Qt bridge only emits a signal).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrfer.core.adapt import load_profile
from vrfer.core.calibration import apply_bias
from vrfer.core.errors import ConfigError, VrferError
from vrfer.core.face import FaceConfig, FaceLocator, default_fallbacks
from vrfer.core.model import ExpressionModel, default_model_path
from vrfer.core.preprocess import preprocess, to_display
from vrfer.core.smoothing import LabelHysteresis, Smoother, SmoothingConfig
from vrfer.core.sources import open_source
from vrfer.core.types import ExpressionState, Frame

log = logging.getLogger("vrfer.pipeline")

GAP_RESET_S = 0.5  # frames further apart than this start the smoother afresh
LIVE_READ_TIMEOUT_S = 0.1  # how often the capture thread looks at the stop flag
STATUS_FRAME_INDEX = -1  # frame_index of a state that carries only a source status message
RUNTIME_SETTINGS = ("face", "smoothing", "calibration")  # what update() may change while running


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the pipeline needs. ``model=None`` means ``core.model.default_model_path()``.

    ``calibration`` holds log-probability offsets per class name (e.g. from the app's
    neutral capture); classes it does not name get 0. ``max_frames`` stops the pipeline
    after that many processed frames.
    """

    source: str = "demo"
    realtime: bool = False
    model: str | Path | None = None
    face: FaceConfig = field(default_factory=FaceConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    calibration: Mapping[str, float] | None = None
    threads: int = 1
    max_frames: int | None = None
    source_options: Mapping[str, object] | None = None  # passed to open_source, e.g. demo hold/loop/seed
    profile: str | Path | None = None  # personal calibration (core.adapt), by name or path


@dataclass(frozen=True)
class PipelineStats:
    """Counters since ``start()``. ``captured == processed + dropped`` (+1 while a frame waits)."""

    captured: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0  # frames whose processing raised
    subscriber_errors: int = 0
    last_error: str | None = None


Subscriber = Callable[[ExpressionState], None]


class Pipeline:
    """``start()`` opens the model, source and face locator (raising ``VrferError`` on the
    caller's thread), then runs until ``stop()``, ``max_frames`` or a finite source's end."""

    def __init__(self, cfg: PipelineConfig | None = None) -> None:
        self._cfg = cfg or PipelineConfig()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._capture_ended = False
        self._idle = False  # the inference thread is waiting for a frame
        self._status: str | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._subscribers: tuple[Subscriber, ...] = ()
        self._counts = dict(captured=0, processed=0, dropped=0, errors=0, subscriber_errors=0)
        self._last_error: str | None = None
        self._reported: set[tuple[str, str]] = set()
        self._source = None
        self.failure: VrferError | None = None  # why the source failed for good, if it did
        self.model: ExpressionModel | None = None
        self.profile = None  # core.adapt.Profile applied to each frame's embedding, when configured

    # -- public API -------------------------------------------------------------------

    @property
    def config(self) -> PipelineConfig:
        return self._cfg

    @property
    def stats(self) -> PipelineStats:
        with self._cond:
            return PipelineStats(**self._counts, last_error=self._last_error)

    @property
    def started(self) -> bool:
        """``start()`` succeeded (the threads ran, whether or not they have finished)."""
        return bool(self._threads)

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._done.is_set()

    def start(self) -> Pipeline:
        if self._threads:
            raise RuntimeError("pipeline already started")
        cfg = self._cfg
        # Cheapest checks first, so a bad model is reported before a camera is opened.
        self.model = ExpressionModel(cfg.model if cfg.model is not None else default_model_path(), cfg.threads)
        self._bias_vector(cfg.calibration)
        if cfg.profile is not None:
            self.profile = load_profile(cfg.profile, self.model)  # refuses a profile fitted on another model
        source = open_source(cfg.source, realtime=cfg.realtime, **dict(cfg.source_options or {}))
        try:
            locator = FaceLocator(cfg.face, default_fallbacks(cfg.face))
        except BaseException:
            source.close()
            raise
        self._source = source
        self._threads = [
            threading.Thread(target=self._capture_loop, args=(source,), name="vrfer-capture", daemon=True),
            threading.Thread(target=self._inference_loop, args=(locator,), name="vrfer-inference", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def subscribe(self, cb: Subscriber) -> Callable[[], None]:
        """Call ``cb(state)`` on the inference thread for every result; returns an unsubscribe."""
        with self._cond:
            self._subscribers = self._subscribers + (cb,)

        def unsubscribe() -> None:
            with self._cond:
                subs = list(self._subscribers)
                if cb in subs:
                    subs.remove(cb)
                self._subscribers = tuple(subs)
        return unsubscribe

    def update(self, **changes: object) -> PipelineConfig:
        """Swap in a new config; while running only face, smoothing and calibration may change."""
        if self._threads:
            fixed = sorted(set(changes) - set(RUNTIME_SETTINGS))
            if fixed:
                raise ConfigError(f"pipeline setting {fixed[0]!r} cannot change while running; "
                                  "stop the pipeline and start a new one")
        try:
            new = dataclasses.replace(self._cfg, **changes)
        except TypeError as exc:
            raise ConfigError(f"unknown pipeline setting: {exc}") from None
        if self.model is not None:
            self._bias_vector(new.calibration)
        self._cfg = new  # one reference assignment: the inference thread sees old or new, never half
        return new

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pipeline has finished on its own (source end or max_frames)."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop both threads and release the source; True when every thread has ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads) and self._source is not None:
            self._source.close()  # a capture thread stuck in a driver read is freed by closing it
            for t in self._threads:
                t.join(0.5)
        return not any(t.is_alive() for t in self._threads)

    def __enter__(self) -> Pipeline:
        if not self._threads:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- threads ----------------------------------------------------------------------

    def _capture_loop(self, source) -> None:
        live = bool(source.live)
        limit = self._cfg.max_frames
        read = 0
        try:
            while not self._stop.is_set():
                if not live:
                    # Read only when the inference thread waits for a frame, so a frame's
                    # "total" latency is its processing, not time spent queueing behind the
                    # previous one (as with a camera whose frames are processed in time).
                    with self._cond:
                        while not (self._slot is None and self._idle) and not self._stop.is_set():
                            self._cond.wait(LIVE_READ_TIMEOUT_S)
                    if self._stop.is_set():
                        break
                try:
                    frame = source.read(timeout=LIVE_READ_TIMEOUT_S if live else None)
                except VrferError as exc:  # the source has failed for good
                    self.failure = exc
                    self._set_status(str(exc))
                    self._report("source", exc)
                    break
                except Exception as exc:
                    self._count_error("source", exc)
                    time.sleep(0.05)  # never spin on a source that keeps raising
                    continue
                self._set_status(source.status)
                if frame is None:
                    if not live or getattr(source, "ended", False):
                        break
                    continue
                with self._cond:
                    self._counts["captured"] += 1
                    if self._slot is not None:  # only for live sources: newest wins
                        self._counts["dropped"] += 1
                    self._slot = frame
                    self._cond.notify_all()
                read += 1
                if limit is not None and not live and read >= limit:
                    break  # the inference thread will stop after these; reading on is waste
        finally:
            with self._cond:
                self._capture_ended = True
                self._cond.notify_all()
            source.close()

    def _inference_loop(self, locator: FaceLocator) -> None:
        applied = self._cfg
        smoother = Smoother(applied.smoothing)
        hysteresis = LabelHysteresis.from_config(applied.smoothing)
        bias = self._bias_vector(applied.calibration)
        last_t: float | None = None
        sent_status: str | None = None
        processed = 0
        try:
            while True:
                with self._cond:
                    self._idle = True
                    self._cond.notify_all()  # a finite source's capture thread reads now
                    while (self._slot is None and not self._capture_ended and not self._stop.is_set()
                           and self._status == sent_status):
                        self._cond.wait(0.5)
                    self._idle = False
                    if self._stop.is_set():
                        break
                    frame, status = self._slot, self._status
                    self._slot = None
                if frame is None:
                    if status == sent_status:  # capture ended and nothing is left
                        break
                    sent_status = status
                    if status is not None:  # e.g. reconnecting: say so even though no frame comes
                        smoother.reset()
                        hysteresis.reset()
                        last_t = None
                        self._deliver(self._empty_state(STATUS_FRAME_INDEX, time.perf_counter(), {}, status))
                    continue
                sent_status = status

                cfg = self._cfg
                if cfg is not applied:
                    if cfg.face != applied.face:
                        try:
                            new_locator = FaceLocator(cfg.face, default_fallbacks(cfg.face))
                        except Exception as exc:
                            self._count_error("face settings", exc)
                        else:
                            locator.close()
                            locator = new_locator
                    if cfg.smoothing != applied.smoothing:
                        smoother = Smoother(cfg.smoothing)
                        hysteresis = LabelHysteresis.from_config(cfg.smoothing)
                    bias = self._bias_vector(cfg.calibration)
                    applied = cfg

                if last_t is not None and frame.timestamp - last_t > GAP_RESET_S:
                    smoother.reset()
                    hysteresis.reset()
                last_t = frame.timestamp
                try:
                    state = self._process(frame, locator, smoother, hysteresis, bias, status)
                except Exception as exc:  # one bad frame must not end the run
                    self._count_error("frame", exc)
                    smoother.reset()
                    hysteresis.reset()
                    state = self._empty_state(frame.index, frame.timestamp, {}, status or
                                              f"frame {frame.index} failed: {_one_line(exc)}", frame)
                with self._cond:
                    self._counts["processed"] += 1
                self._deliver(state)
                processed += 1
                if applied.max_frames is not None and processed >= applied.max_frames:
                    break
        finally:
            self._stop.set()  # tells a live capture thread that nobody is listening any more
            with self._cond:
                self._cond.notify_all()
            locator.close()
            self._done.set()

    # -- one frame --------------------------------------------------------------------

    def _process(self, frame: Frame, locator: FaceLocator, smoother: Smoother, hysteresis: LabelHysteresis,
                 bias: np.ndarray | None, status: str | None) -> ExpressionState:
        model = self.model
        assert model is not None
        t0 = time.perf_counter()
        geometry = locator.process(frame)
        t1 = time.perf_counter()
        timings = {"locate": (t1 - t0) * 1e3}
        if geometry is None:
            smoother.reset()  # the next face starts afresh: never blend into a stale expression
            hysteresis.reset()
            return self._empty_state(frame.index, frame.timestamp, timings,
                                     status or locator.last_reason, frame)
        x = preprocess(frame.image, geometry.transform, model.spec)
        t2 = time.perf_counter()
        pred = model.predict_all(x[None])
        probs, embedding = pred.probs, pred.embedding
        t3 = time.perf_counter()
        raw = probs[0].astype(np.float64)
        calibrated = raw if self.profile is None else self.profile.apply(raw, embedding[0])
        if bias is not None:
            calibrated = apply_bias(calibrated, bias)
        smoothed = smoother.update(calibrated, frame.timestamp)
        label = hysteresis.update(smoothed)
        shapes = {} if pred.shapes is None else dict(
            zip(model.shapes, map(float, smoother.update_shapes(pred.shapes[0], frame.timestamp))))
        t4 = time.perf_counter()
        timings.update(preprocess=(t2 - t1) * 1e3, model=(t3 - t2) * 1e3, smooth=(t4 - t3) * 1e3)
        crop = to_display(x, model.spec)  # what the model saw, for the picture-in-picture
        classes = model.classes
        timings["total"] = (time.perf_counter() - frame.timestamp) * 1e3
        return ExpressionState(
            frame_index=frame.index, timestamp=frame.timestamp, face=True, label=classes[label],
            confidence=float(smoothed[label]), probs=dict(zip(classes, map(float, smoothed))),
            raw_probs=dict(zip(classes, map(float, raw))), timings_ms=timings, file=frame.file,
            truth=frame.truth, geometry=geometry, crop=crop,
            embedding=None if embedding is None else embedding[0], message=status, image=frame.image,
            shapes=shapes)

    def _empty_state(self, index: int, timestamp: float, timings: dict[str, float], message: str | None,
                     frame: Frame | None = None) -> ExpressionState:
        zeros = dict.fromkeys(self.model.classes if self.model else (), 0.0)
        if frame is not None:
            timings = {**timings, "total": (time.perf_counter() - frame.timestamp) * 1e3}
        return ExpressionState(
            frame_index=index, timestamp=timestamp, face=False, label=None, confidence=0.0, probs=zeros,
            raw_probs=dict(zeros), timings_ms=timings, file=frame.file if frame else None,
            truth=frame.truth if frame else None, message=message,
            image=frame.image if frame else None,
            shapes=dict.fromkeys(self.model.shapes if self.model else (), 0.0))  # no face: a closed, neutral mouth

    # -- helpers ----------------------------------------------------------------------

    def _bias_vector(self, calibration: Mapping[str, float] | None) -> np.ndarray | None:
        if not calibration or self.model is None:
            return None
        classes = self.model.classes
        unknown = [k for k in calibration if k not in classes]
        if unknown:
            raise ConfigError(f"calibration names class {unknown[0]!r}, which the model does not have "
                              f"({', '.join(classes)})")
        return np.array([float(calibration.get(c, 0.0)) for c in classes])

    def _deliver(self, state: ExpressionState) -> None:
        for cb in self._subscribers:
            try:
                cb(state)
            except Exception as exc:  # a broken subscriber must not stop the others or the thread
                with self._cond:
                    self._counts["subscriber_errors"] += 1
                self._report(f"subscriber {getattr(cb, '__qualname__', cb)!s}", exc)

    def _set_status(self, status: str | None) -> None:
        if status != self._status:
            with self._cond:
                self._status = status
                self._cond.notify_all()

    def _count_error(self, where: str, exc: BaseException) -> None:
        with self._cond:
            self._counts["errors"] += 1
        self._report(where, exc)

    def _report(self, where: str, exc: BaseException) -> None:
        """Log each kind of failure once (with its traceback), not once per frame."""
        text = f"{where}: {_one_line(exc)}"
        with self._cond:
            self._last_error = text
            first = (where, type(exc).__name__) not in self._reported
            self._reported.add((where, type(exc).__name__))
        if first:
            log.warning("%s (reported once; later ones are only counted)", text,
                        exc_info=not isinstance(exc, VrferError))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, VrferError) else text
