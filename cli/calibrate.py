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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrfer.cli.argtypes import positive_int, seconds
from vrfer.cli.run import parse_roi

PROMPTS = {
    "neutral": "a neutral, relaxed face",
    "happiness": "a happy face (smile)",
    "surprise": "a surprised face (mouth open)",
    "sadness": "a sad face (corners down)",
    "anger": "an angry face (lips pressed)",
    "disgust": "a disgusted face (upper lip raised)",
    "fear": "a fearful face (mouth stretched)",
    "contempt": "a contemptuous face (one-sided smirk)",
}
DEFAULT_SECONDS = 3.0
DEFAULT_COUNTDOWN = 3.0
DEFAULT_MAX_PER_CLASS = 30


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
    p.add_argument("--seconds", type=seconds, default=DEFAULT_SECONDS,
                   help=f"recording per class in interactive mode (default {DEFAULT_SECONDS:g})")
    p.add_argument("--countdown", type=seconds, default=DEFAULT_COUNTDOWN,
                   help=f"countdown before each recording (default {DEFAULT_COUNTDOWN:g})")
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


def is_live(source: str) -> bool:
    text = source.strip()
    return bool(re.fullmatch(r"\d+|/dev/video\d+", text) or re.match(r"https?://", text, re.IGNORECASE))


@dataclass
class Recording:
    """Recorded faces per class: general-model probabilities and embeddings."""

    probs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    embeddings: dict[str, list[np.ndarray]] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)  # frames seen while recording, face or not

    def add(self, cls: str, probs: np.ndarray, embedding: np.ndarray) -> None:
        self.probs.setdefault(cls, []).append(probs)
        self.embeddings.setdefault(cls, []).append(embedding)

    def drop(self, cls: str) -> None:
        self.probs.pop(cls, None)
        self.embeddings.pop(cls, None)

    def arrays(self, classes: tuple[str, ...], cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, probs, labels), at most ``cap`` evenly spaced faces per class."""
        es, ps, ys = [], [], []
        for i, c in enumerate(classes):
            n = len(self.probs.get(c, ()))
            if not n:
                continue
            keep = np.unique(np.linspace(0, n - 1, min(n, cap)).round().astype(int))
            es.extend(self.embeddings[c][j] for j in keep)
            ps.extend(self.probs[c][j] for j in keep)
            ys.extend([i] * len(keep))
        if not ys:
            return np.zeros((0, 0)), np.zeros((0, len(classes))), np.zeros(0, dtype=np.int64)
        return np.stack(es), np.stack(ps), np.asarray(ys)


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


class Session:
    """Feeds pipeline states to the phases; time is capture time (live) or frame index / fps."""

    def __init__(self, pipeline, states: queue.Queue, live: bool, fps: float, tty: bool) -> None:
        self.pipeline, self.states, self.live, self.fps, self.tty = pipeline, states, live, fps, tty
        self.ended = False
        self.face = False  # whether the latest frame had a face
        self.status: str | None = None
        self._pending = None  # the state that ended a phase: it belongs to the next one

    def clock(self, state) -> float:
        return state.timestamp if self.live else state.frame_index / self.fps

    def next_state(self, timeout: float = 0.2):
        """The next frame's state, None on timeout; sets ``ended`` when the source is done."""
        from vrfer.core.pipeline import STATUS_FRAME_INDEX

        if self._pending is not None:
            state, self._pending = self._pending, None
            return state
        while True:
            try:
                state = self.states.get(timeout=timeout)
            except queue.Empty:
                if self.pipeline.wait(0) and self.states.empty():
                    self.ended = True
                return None
            if state.frame_index == STATUS_FRAME_INDEX:
                self.status = state.message
                self.say(f"note: {state.message}", final=True)
                continue
            self.face = bool(state.face)
            return state

    def drain(self) -> None:
        """Forget frames captured while the user read a prompt (only the face flag is kept)."""
        self._pending = None
        while not self.ended:
            try:
                state = self.states.get_nowait()
            except queue.Empty:
                return
            self.face = bool(state.face) if state.frame_index >= 0 else self.face

    def say(self, text: str, final: bool = False) -> None:
        """A status line: rewritten in place on a terminal, one line per message otherwise."""
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text + ("\n" if final else ""))
        elif final:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def phase(self, cls: str, countdown: float, duration: float, rec: Recording,
              keys: Keys | None = None) -> str:
        """Countdown then recording of one class. Returns 'done', 'skip' or 'end'."""
        name = PROMPTS.get(cls, cls)
        start = None
        face_frames = frames = 0
        last_shown = None
        while True:
            if keys is not None and keys.poll(0) in ("s", "S"):
                rec.drop(cls)
                self.say(f"{cls}: skipped", final=True)
                return "skip"
            state = self.next_state()
            if state is None:
                if self.ended:
                    self.say(f"{cls}: the source ended after {face_frames} recorded faces", final=True)
                    rec.frames[cls] = frames
                    return "end"
                continue
            t = self.clock(state)
            start = t if start is None else start
            elapsed = t - start
            found = "face found" if state.face else "NO FACE: move into view"
            if elapsed < countdown:
                shown = f"show {name}: {int(np.ceil(countdown - elapsed))}...  [{found}]"
            elif elapsed < countdown + duration:
                frames += 1
                if state.face and state.embedding is not None:
                    face_frames += 1
                    rec.add(cls, np.array([state.raw_probs[c] for c in self.pipeline.model.classes]),
                            np.asarray(state.embedding, dtype=np.float64))
                shown = (f"recording {cls}: {elapsed - countdown:4.1f}/{duration:g} s, "
                         f"face in {face_frames}/{frames} frames  [{found}]")
            else:
                self._pending = state
                rec.frames[cls] = frames
                self.say(f"{cls}: {face_frames} faces recorded in {frames} frames", final=True)
                return "done"
            if shown != last_shown and self.tty:
                self.say(shown)
                last_shown = shown


def run(args: argparse.Namespace) -> int:
    from vrfer.core.adapt import DEFAULT_L2, fit_profile, model_fingerprint, profile_path, save_profile
    from vrfer.core.errors import ConfigError
    from vrfer.core.face import FaceConfig
    from vrfer.core.pipeline import Pipeline, PipelineConfig
    from vrfer.core.smoothing import SmoothingConfig
    from vrfer.core.sources import DEFAULT_FPS, open_source

    from vrfer.cli.run import _unrelated_frames

    out = profile_path(args.out)  # a bad name is reported before the camera opens
    live = is_live(args.source)
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
        face = FaceConfig(mode="mesh", tracking=not _unrelated_frames(args.source, False))
    cfg = PipelineConfig(source=args.source, model=args.model, face=face, threads=args.threads,
                         smoothing=SmoothingConfig(strength=0.0, margin=0.0))
    pipeline = Pipeline(cfg)
    states: queue.Queue = queue.Queue()
    pipeline.subscribe(states.put)
    rec = Recording()
    try:
        pipeline.start()
        model = pipeline.model
        fp = model_fingerprint(model)  # refuses a model without an embedding output
        classes = model.classes
        plan = args.script if args.script is not None else [(c, args.seconds) for c in classes]
        unknown = [c for c, _ in plan if c not in classes]
        if unknown:
            raise ConfigError(f"--script names class {unknown[0]!r}; the model's classes are {', '.join(classes)}")
        print(f"calibrating {fp.name} ({model.path}) on {args.source}: "
              f"{', '.join(c for c, s in plan if s > 0)}", file=sys.stderr)
        session = Session(pipeline, states, live, fps, tty)
        with (Keys() if args.script is None else contextlib.nullcontext()) as keys:
            for cls, secs in plan:
                if secs <= 0:
                    continue
                if keys is not None:
                    answer = _wait_for_start(session, keys, cls)
                    if answer == "skip":
                        continue
                    if answer == "stop":
                        break
                result = session.phase(cls, args.countdown, secs, rec, keys)
                if result == "end":
                    break
    finally:
        pipeline.stop()
    e, p, y = rec.arrays(classes, args.max_per_class)
    t0 = time.perf_counter()
    profile = fit_profile(e.reshape(len(y), fp.embedding_dim), p, y, fp,
                          l2=DEFAULT_L2 if args.l2 is None else args.l2, name=out.stem)
    fit_s = time.perf_counter() - t0
    path = save_profile(profile, out)
    fitted = ", ".join(f"{c} ({n})" for c, n in profile.samples.items())
    skipped = ", ".join(profile.skipped) or "none"
    print(f"saved profile {profile.name} to {path}: fitted {fitted}; skipped (general model): {skipped}; "
          f"fit in {fit_s:.2f} s")
    return 0


def _wait_for_start(session: Session, keys: Keys, cls: str) -> str:
    """Prompt until Enter (``start``), s (``skip``) or q / a source end (``stop``)."""
    prompt = f"next: {cls}, show {PROMPTS.get(cls, cls)}.  [Enter] start  [s] skip  [q] finish"
    while not session.ended:
        session.drain()
        session.say(f"{prompt}  [{'face found' if session.face else 'NO FACE'}]")
        key = keys.poll(0.1)
        if key in ("\n", "\r", " "):
            session.say(f"{cls}: get ready", final=True)
            session.drain()
            return "start"
        if key in ("s", "S"):
            session.say(f"{cls}: skipped", final=True)
            return "skip"
        if key in ("q", "Q"):
            session.say("finishing with what is recorded", final=True)
            return "stop"
    return "stop"
