"""``vrfer app``: the desktop window, or ``--screenshot OUT.png`` to save one headlessly."""
from __future__ import annotations

import argparse
from pathlib import Path

from vrfer.core.errors import VrferError

SOURCE_HELP = "a camera index (0), a video file, an http(s):// MJPEG URL or demo"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "app", help="the desktop app: live preview, label and bars, overlay, avatar output",
        description="Open the vrfer window. With --screenshot it runs offscreen, waits for frames, "
                    "saves a PNG of the window and exits.")
    p.add_argument("--source", help=f"{SOURCE_HELP} (default: the last one used, else camera 0)")
    p.add_argument("--model", help="an exported vrfer ONNX model (default: the shipped student)")
    p.add_argument("--screenshot", type=Path, metavar="OUT.png", help="save a PNG of the window and exit")
    p.add_argument("--after-frames", type=int, default=30, metavar="N",
                   help="with --screenshot: wait for N processed frames first (default 30)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="with --screenshot: give up after S seconds (default 60)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.after_frames < 1:
        raise VrferError(f"--after-frames must be at least 1, got {args.after_frames}")
    if args.screenshot is None and (args.after_frames != 30 or args.timeout != 60.0):
        raise VrferError("--after-frames and --timeout only apply with --screenshot")
    from vrfer.app.launch import run_app  # imports PyQt6: only when the app is wanted

    return run_app(source=args.source, model=args.model, screenshot=args.screenshot,
                   after_frames=args.after_frames, timeout=args.timeout)
