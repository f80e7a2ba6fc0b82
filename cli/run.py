"""``vrfer run``: the pipeline without a window, printing JSON lines or a summary.

Avatar sinks plug in through ``SINK_MODULES``: each named module provides
``add_arguments(parser)`` (its flags, e.g. ``--osc-vrchat HOST:PORT``) and
``make_sinks(args) -> list`` of ``core.avatar.status.Sink`` (``send(state)``, never blocking,
``status()`` and ``close()``); ``cli/avatar_flags.py`` turns its flags into the
``AvatarConfig`` that ``core.avatar.sinks.make_sinks`` builds from, as the app does from its
settings. Every sink returned is subscribed to the pipeline for the run.
"""
from __future__ import annotations

import argparse
import importlib
import json
import queue
import sys
from pathlib import Path

from vrfer.cli.argtypes import positive_int, unit_float
from vrfer.core.avatar.status import Sink
from vrfer.core.types import ExpressionState

SINK_MODULES: tuple[str, ...] = ("vrfer.cli.avatar_flags",)  # avatar sinks: --osc-vrchat, --osc-vrcft, --openxr
SMOOTHING_METHODS = ("ema", "one_euro", "off")


def _sink_modules() -> list:
    return [importlib.import_module(name) for name in SINK_MODULES]


def parse_roi(text: str) -> tuple[int, int, int, int]:
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H in whole pixels, got {text!r}") from None
    return x, y, w, h


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help="run the pipeline headless (JSON lines or a summary)",
                              description="Run face location, the expression model and smoothing on a "
                                          "source, without a window.")
    p.add_argument("--source", default="demo",
                   help="camera index, video file, folder of images, http(s) MJPEG URL or 'demo' (default)")
    p.add_argument("--model", type=Path, help="ONNX model (default: assets/models/student.onnx or $VRFER_MODEL)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N processed frames")
    p.add_argument("--jsonl", action="store_true", help="print one JSON object per processed frame")
    p.add_argument("--realtime", action="store_true",
                   help="pace files and folders like a camera (and drop frames when behind)")
    p.add_argument("--roi", type=parse_roi, metavar="X,Y,W,H",
                   help="mouth-camera mode: a fixed region instead of face detection")
    p.add_argument("--rotate", type=int, choices=(0, 90, 180, 270), default=0,
                   help="clockwise turn that makes the ROI upright")
    p.add_argument("--flip", action="store_true", help="mirror the ROI left-right")
    p.add_argument("--static", action="store_true",
                   help="detect the face afresh in every frame (default for images and the unpaced demo)")
    p.add_argument("--smoothing", choices=SMOOTHING_METHODS, default=None,
                   help="probability smoothing (default: ema; off for images and the unpaced demo)")
    p.add_argument("--strength", type=unit_float, default=0.5, help="smoothing strength 0..1 (default 0.5)")
    p.add_argument("--margin", type=unit_float, default=None,
                   help="label hysteresis: a new label must lead by this much "
                        "(default 0.1; 0 for images and the unpaced demo)")
    p.add_argument("--hold", type=positive_int, default=1, metavar="N",
                   help="... for N consecutive frames (default 1)")
    p.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime threads (default 1)")
    p.add_argument("--profile", metavar="PROFILE", default=None,
                   help="personal calibration from 'vrfer calibrate': a saved profile's name or a .json path")
    for mod in _sink_modules():
        mod.add_arguments(p)
    p.set_defaults(func=run)
    return p


def build_config(args: argparse.Namespace):
    """Command-line flags -> a frozen PipelineConfig (ConfigError for bad values)."""
    from vrfer.core.face import FaceConfig
    from vrfer.core.pipeline import PipelineConfig
    from vrfer.core.smoothing import SmoothingConfig
    from vrfer.core.source_spec import source_defaults

    defaults = source_defaults(args.source, args.realtime)
    if args.roi is not None:
        face = FaceConfig(mode="roi", roi=args.roi, rotate=args.rotate, flip=args.flip)
    else:
        face = FaceConfig(mode="mesh", tracking=defaults.tracking and not args.static)
    method = args.smoothing or ("ema" if defaults.smoothing else "off")
    margin = args.margin if args.margin is not None else (SmoothingConfig.margin if defaults.smoothing else 0.0)
    smoothing = SmoothingConfig(method="ema" if method == "off" else method,
                                strength=0.0 if method == "off" else args.strength,
                                margin=margin, min_hold_frames=args.hold)
    return PipelineConfig(source=args.source, realtime=args.realtime, model=args.model, face=face,
                          smoothing=smoothing, threads=args.threads, max_frames=args.max_frames,
                          profile=getattr(args, "profile", None))


def state_record(state: ExpressionState) -> dict:
    """One JSON line: the fields a script evaluating a recording needs."""
    rec = {
        "frame": state.frame_index,
        "file": state.file,
        "label": state.label,
        "confidence": round(state.confidence, 6),
        "probs": {k: round(v, 6) for k, v in state.probs.items()},
        "face": state.face,
        # Which finder placed the face (mesh, mesh_refined, locator, tracked, roi) and how sure it is.
        "face_path": state.geometry.path if state.geometry is not None else None,
        "face_score": round(state.geometry.score, 4) if state.geometry is not None else None,
        "latency_ms": {k: round(v, 3) for k, v in state.timings_ms.items()},
    }
    if state.shapes:  # a model with a mouth-shapes head
        rec["shapes"] = {k: round(v, 6) for k, v in state.shapes.items()}
    if state.truth is not None:
        rec["truth"] = state.truth
    if state.message is not None:
        rec["message"] = state.message
    return rec


def _write_skipped(pipeline, reported: int) -> int:
    """One JSON line per file the source skipped since the last call (``frame`` null, ``skipped``: why)."""
    files = pipeline.skipped_files
    for name, why in files[reported:]:
        sys.stdout.write(json.dumps({"frame": None, "file": name, "skipped": why}) + "\n")
    return len(files)


class Summary:
    """Counts and per-stage timings for the end-of-run report."""

    def __init__(self) -> None:
        self.frames = 0
        self.faces = 0
        self.labelled = 0
        self.correct = 0
        self.correct_raw = 0
        self.timings: dict[str, list[float]] = {}

    def add(self, state: ExpressionState) -> None:
        self.frames += 1
        self.faces += state.face
        for stage, ms in state.timings_ms.items():
            self.timings.setdefault(stage, []).append(ms)
        if state.truth is not None:
            self.labelled += 1
            self.correct += state.label == state.truth
            if state.raw_probs and state.face:
                self.correct_raw += max(state.raw_probs, key=state.raw_probs.get) == state.truth

    def lines(self, stats) -> list[str]:
        import numpy as np

        skipped = f", {stats.skipped} skipped (unreadable or empty files)" if stats.skipped else ""
        out = [f"frames: {self.frames} processed{skipped}, {stats.dropped} dropped, {stats.errors} failed"]
        if self.frames:
            out.append(f"face found: {self.faces}/{self.frames} ({100 * self.faces / self.frames:.1f}%)")
        if self.labelled:
            out.append(f"accuracy against truth: {100 * self.correct / self.labelled:.1f}% shown label, "
                       f"{100 * self.correct_raw / self.labelled:.1f}% raw model output "
                       f"({self.labelled} frames with a known label; no face counts as wrong)")
        else:
            out.append("accuracy: no ground truth in this source")
        if self.timings:
            out.append("latency ms      p50      p99    (n)")
            order = ["locate", "preprocess", "model", "smooth", "total"]
            for stage in sorted(self.timings, key=lambda s: (order.index(s) if s in order else 99, s)):
                v = np.asarray(self.timings[stage])
                out.append(f"  {stage:<10} {np.percentile(v, 50):8.3f} {np.percentile(v, 99):8.3f}  ({len(v)})")
        if stats.last_error:
            out.append(f"last error: {stats.last_error}")
        return out


def run(args: argparse.Namespace) -> int:
    from vrfer.core.pipeline import STATUS_FRAME_INDEX, Pipeline

    cfg = build_config(args)
    sinks: list[Sink] = []
    pipeline = Pipeline(cfg)
    states: queue.Queue[ExpressionState] = queue.Queue()
    summary = Summary()
    reported = 0  # skipped files already written to the JSON stream
    try:
        for mod in _sink_modules():
            sinks.extend(mod.make_sinks(args))
        for sink in sinks:
            pipeline.subscribe(sink.send)
        pipeline.subscribe(states.put)  # printing happens here, on the main thread
        pipeline.start()
        if not args.jsonl:
            info = pipeline.model.info
            print(f"model {info.name} ({info.path}), source {cfg.source}", file=sys.stderr)
        while True:
            try:
                state = states.get(timeout=0.2)
            except queue.Empty:
                if pipeline.wait(0) and states.empty():
                    break
                continue
            if state.frame_index == STATUS_FRAME_INDEX:
                print(f"note: {state.message}", file=sys.stderr, flush=True)
                continue
            summary.add(state)
            if args.jsonl:
                reported = _write_skipped(pipeline, reported)
                sys.stdout.write(json.dumps(state_record(state)) + "\n")
                sys.stdout.flush()
        if args.jsonl:
            _write_skipped(pipeline, reported)
    finally:
        pipeline.stop()
        for sink in sinks:
            sink.close()
        if not args.jsonl and pipeline.started:
            print("\n".join(summary.lines(pipeline.stats)), flush=True)
    if pipeline.failure is not None:
        raise pipeline.failure
    return 0


if __name__ == "__main__":  # python -m vrfer.cli.run ... behaves like vrfer run ...
    from vrfer.cli.main import main

    sys.exit(main(["run", *sys.argv[1:]]))
