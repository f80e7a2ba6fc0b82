"""``vrfer calibrate``: record each expression in turn, fit a personal profile, save it.

Interactive (a camera and a terminal): for each class the user is asked for the expression,
presses Enter (or ``s`` to skip, ``q`` to finish early), sees a countdown with a live
face-found check, then a few seconds are recorded. ``--script neutral:3,happiness:3,...``
runs the same without key presses: classes in that order, for those seconds, the others
skipped. For a file or folder, time is the source's own (a second is fps frames), so a
script over a folder is deterministic.

Only frames where a face was found are recorded; at most ``--max-per-class`` of them per
class, evenly spaced (consecutive camera frames are nearly the same picture). The profile
is fitted by ``core.adapt.fit_profile`` and saved by name in the user's data directory, or
to a path ending in ``.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vrfer.cli.argtypes import positive_int, seconds
from vrfer.cli.run import parse_roi
from vrfer.core.calibration import (DEFAULT_COUNTDOWN_S, DEFAULT_MAX_PER_CLASS, DEFAULT_RECORD_S,
                                    CalibrationSession)
from vrfer.core.errors import ConfigError
from vrfer.core.types import ExpressionState

if TYPE_CHECKING:
    from vrfer.core.pipeline import Pipeline


def parse_script(text: str) -> list[tuple[str, float]]:
    """``neutral:3,happiness:2.5`` -> [(class, seconds)]; 0 seconds skips that class."""
    plan = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([A-Za-z_]+)\s*:\s*(\d+(?:\.\d*)?)", part)
        if not m:
            raise argparse.ArgumentTypeError(f"expected CLASS:SECONDS[,CLASS:SECONDS...], got {part!r}")
        plan.append((m.group(1).lower(), float(m.group(2))))
    if not plan:
        raise argparse.ArgumentTypeError("the script names no class")
    return plan


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("calibrate", help="record your expressions and fit a personal profile",
                              description="Record each expression in turn and fit a personal calibration "
                                          "profile for 'vrfer run --profile' and the app.")
    p.add_argument("--source", default="0", help="camera index (default 0), video file, folder or MJPEG URL")
    p.add_argument("--out", required=True, metavar="PROFILE",
                   help="profile name (saved in the user's data directory) or a path ending in .json")
    p.add_argument("--model", type=Path, help="ONNX model (default: assets/models/student.onnx or $VRFER_MODEL)")
    p.add_argument("--script", type=parse_script, metavar="CLASS:SECONDS,...",
                   help="no key presses: record these classes in this order for these seconds, skip the rest")
    p.add_argument("--seconds", type=seconds, default=DEFAULT_RECORD_S,
                   help=f"recording per class in interactive mode (default {DEFAULT_RECORD_S:g})")
    p.add_argument("--countdown", type=seconds, default=DEFAULT_COUNTDOWN_S,
                   help=f"countdown before each recording (default {DEFAULT_COUNTDOWN_S:g})")
    p.add_argument("--max-per-class", type=positive_int, default=DEFAULT_MAX_PER_CLASS, metavar="N",
                   help=f"faces kept per class, evenly spaced (default {DEFAULT_MAX_PER_CLASS})")
    p.add_argument("--l2", type=float, default=None, help="prior strength toward the general model "
                   "(default core.adapt.DEFAULT_L2; larger trusts the recording less)")
    p.add_argument("--roi", type=parse_roi, metavar="X,Y,W,H",
                   help="mouth-camera mode: a fixed region instead of face detection")
    p.add_argument("--rotate", type=int, choices=(0, 90, 180, 270), default=0,
                   help="clockwise turn that makes the ROI upright")
    p.add_argument("--flip", action="store_true", help="mirror the ROI left-right")
    p.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime threads (default 1)")
    p.set_defaults(func=run)
    return p


class Keys:
    """Single key presses from a terminal without Enter (POSIX cbreak or Windows msvcrt)."""

    def __init__(self) -> None:
        self._restore = None

    def __enter__(self) -> Keys:
        if os.name != "nt":
            import termios
            import tty

            fd = sys.stdin.fileno()
            old = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self._restore = lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._restore:
            self._restore()

    def poll(self, timeout: float) -> str | None:
        if os.name == "nt":
            import msvcrt

            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if msvcrt.kbhit():
                    return msvcrt.getwch()
                time.sleep(0.02)
            return None
        import select

        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        return os.read(sys.stdin.fileno(), 1).decode(errors="ignore") if ready else None


class Terminal:
    """Status lines on stderr: rewritten in place on a terminal, one line per message otherwise."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self._last: str | None = None

    def say(self, text: str, final: bool = False) -> None:
        if final or text != self._last:
            if self.tty:
                sys.stderr.write("\r\x1b[K" + text + ("\n" if final else ""))
            elif final:
                sys.stderr.write(text + "\n")
            sys.stderr.flush()
        self._last = None if final else text


class StateFeed:
    """Pipeline states for the session, on the command's clock: capture time (live) or frame index / fps."""

    def __init__(self, pipeline: Pipeline, live: bool, fps: float, out: Terminal) -> None:
        from vrfer.core.pipeline import STATUS_FRAME_INDEX  # the pipeline (mediapipe, ORT) loads with the command

        self.status_index = STATUS_FRAME_INDEX
        self.pipeline, self.live, self.fps, self.out = pipeline, live, fps, out
        self.states: queue.Queue[ExpressionState] = queue.Queue()
        pipeline.subscribe(self.states.put)
        self.ended = False

    def clock(self, state: ExpressionState) -> float:
        return state.timestamp if self.live else state.frame_index / self.fps

    def next(self, timeout: float = 0.2) -> ExpressionState | None:
        """The next frame's state, None on timeout; sets ``ended`` when the source is done."""
        while True:
            try:
                state = self.states.get(timeout=timeout)
            except queue.Empty:
                if self.pipeline.wait(0) and self.states.empty():
                    self.ended = True
                return None
            if state.frame_index == self.status_index:
                self.out.say(f"note: {state.message}", final=True)
                continue
            return state

    def drain(self, session: CalibrationSession) -> None:
        """Forget frames captured while the user read a prompt (only the face flag is kept)."""
        while True:
            try:
                state = self.states.get_nowait()
            except queue.Empty:
                return
            if state.frame_index >= 0:
                session.face = bool(state.face)


def record(session: CalibrationSession, feed: StateFeed, out: Terminal, keys: Keys | None) -> None:
    """Feed states to the session until it is done, the source ends or the user stops."""
    while session.current is not None:
        cls = session.current
        if keys is not None and session.phase == "prompt":
            answer = _wait_for_start(session, feed, out, keys)
            if answer == "stop":
                session.stop()
                return
            if answer == "skip":
                session.skip()
                continue
            session.arm()
        if keys is not None and keys.poll(0) in ("s", "S"):
            session.skip()
            out.say(f"{cls}: skipped", final=True)
            continue
        state = feed.next()
        if state is None:
            if feed.ended:
                out.say(f"{cls}: the source ended after {session.recording.count(cls)} recorded faces", final=True)
                return
            continue
        ended = session.feed(state, feed.clock(state))
        if ended is not None:
            out.say(session.summary(ended), final=True)
        elif out.tty and session.phase in ("countdown", "record"):
            out.say(session.status(feed.clock(state)))


def _wait_for_start(session: CalibrationSession, feed: StateFeed, out: Terminal, keys: Keys) -> str:
    """Prompt until Enter (``start``), s (``skip``) or q / a source end (``stop``)."""
    cls = session.current
    prompt = f"next: {cls}, {session.prompt()}.  [Enter] start  [s] skip  [q] finish"
    while not feed.ended:
        feed.drain(session)
        out.say(f"{prompt}  [{'face found' if session.face else 'NO FACE'}]")
        key = keys.poll(0.1)
        if key in ("\n", "\r", " "):
            out.say(f"{cls}: get ready", final=True)
            feed.drain(session)
            return "start"
        if key in ("s", "S"):
            out.say(f"{cls}: skipped", final=True)
            return "skip"
        if key in ("q", "Q"):
            out.say("finishing with what is recorded", final=True)
            return "stop"
    return "stop"


def run(args: argparse.Namespace) -> int:
    from vrfer.core.adapt import DEFAULT_L2, model_fingerprint, profile_path, save_profile
    from vrfer.core.face import FaceConfig
    from vrfer.core.pipeline import Pipeline, PipelineConfig
    from vrfer.core.smoothing import SmoothingConfig
    from vrfer.core.source_spec import classify_source, source_defaults
    from vrfer.core.sources import DEFAULT_FPS, open_source

    out = profile_path(args.out)  # a bad name is reported before the camera opens
    live = classify_source(args.source).live
    tty = sys.stdin.isatty() and sys.stderr.isatty()
    if args.script is None and not (live and sys.stdin.isatty()):
        raise ConfigError("interactive calibration needs a camera and a terminal for key presses; "
                          "pass --script CLASS:SECONDS,... (e.g. --script neutral:3,happiness:3)")
    fps = DEFAULT_FPS
    if not live:  # a file's own fps sets its clock; opening a file or folder is cheap
        with open_source(args.source) as src:
            fps = float(src.fps or DEFAULT_FPS)
    if args.roi is not None:
        face = FaceConfig(mode="roi", roi=args.roi, rotate=args.rotate, flip=args.flip)
    else:
        face = FaceConfig(mode="mesh", tracking=source_defaults(args.source, False).tracking)
    cfg = PipelineConfig(source=args.source, model=args.model, face=face, threads=args.threads,
                         smoothing=SmoothingConfig(strength=0.0, margin=0.0))
    pipeline = Pipeline(cfg)
    terminal = Terminal(tty)
    feed = StateFeed(pipeline, live, fps, terminal)
    try:
        pipeline.start()
        model = pipeline.model
        fp = model_fingerprint(model)  # refuses a model without an embedding output
        classes = model.classes
        plan = args.script if args.script is not None else [(c, args.seconds) for c in classes]
        unknown = [c for c, _ in plan if c not in classes]
        if unknown:
            raise ConfigError(f"--script names class {unknown[0]!r}; the model's classes are {', '.join(classes)}")
        session = CalibrationSession(classes, plan, countdown=args.countdown, max_per_class=args.max_per_class,
                                     auto=args.script is not None)
        print(f"calibrating {fp.name} ({model.path}) on {args.source}: "
              f"{', '.join(c for c, _ in session.plan)}", file=sys.stderr)
        with (Keys() if args.script is None else contextlib.nullcontext()) as keys:
            record(session, feed, terminal, keys)
    finally:
        pipeline.stop()
    t0 = time.perf_counter()
    profile = session.fit(fp, l2=DEFAULT_L2 if args.l2 is None else args.l2, name=out.stem)
    fit_s = time.perf_counter() - t0
    path = save_profile(profile, out)
    fitted = ", ".join(f"{c} ({n})" for c, n in profile.samples.items())
    skipped = ", ".join(profile.skipped) or "none"
    print(f"saved profile {profile.name} to {path}: fitted {fitted}; skipped (general model): {skipped}; "
          f"fit in {fit_s:.2f} s")
    return 0
