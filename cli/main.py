"""The ``vrfer`` command: one sub-command per module in ``COMMANDS``.

Each module provides ``add_parser(subparsers)``, which adds its sub-parser and sets
``func(args) -> int``. Modules import heavy things (torch, Qt, mediapipe) only inside that
function, so ``vrfer --help`` stays fast and a missing optional extra breaks only its own
command, with one line saying what to install.

Errors: ``VrferError`` prints ``error: <message>`` and exits 2, as do argparse errors;
Ctrl-C exits 130 quietly. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from vrfer.core.errors import VrferError

COMMANDS: tuple[str, ...] = (
    "vrfer.cli.run", "vrfer.cli.sources", "vrfer.cli.train", "vrfer.cli.export", "vrfer.cli.eval",
    "vrfer.cli.reproduce", "vrfer.cli.app", "vrfer.cli.bench", "vrfer.cli.headset", "vrfer.cli.calibrate",
    "vrfer.cli.openxr", "vrfer.cli.doctor", "vrfer.cli.checkpoint", "vrfer.cli.mouth",
)

# Top-level package missing -> what to install. The base dependencies are listed too: an
# install with --no-deps or a broken venv should still get a readable line.
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("the training extra", "pip install -e '.[train]'"),
    "onnx": ("the training extra", "pip install -e '.[train]'"),
    "onnxscript": ("the training extra", "pip install -e '.[train]'"),
    "tensorboard": ("the training extra", "pip install -e '.[train]'"),
    "tqdm": ("the training extra", "pip install -e '.[train]'"),
    "xr": ("the openxr extra", "pip install -e '.[openxr]'"),
    "PyQt6": ("PyQt6", "pip install -e ."),
    "pyqtgraph": ("pyqtgraph", "pip install -e ."),
    # The desktop bundle leaves training out.
    "vrfer.training": ("the training code, which the desktop bundle leaves out", "pip install 'vrfer[train]'"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <message>``, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {' '.join(message.split())}\n")
        sys.exit(2)


def missing_extra(exc: ImportError) -> str | None:
    """The top-level module an ImportError lacks, when it belongs to an optional extra."""
    name = getattr(exc, "name", None) or ""
    if name == "vrfer.training" or name.startswith("vrfer.training."):
        return "vrfer.training"
    name = name.split(".")[0]
    return name if name in EXTRAS else None


def extra_message(command: str, module: str) -> str:
    what, how = EXTRAS[module]
    return f"vrfer {command} needs {what}: {how}"


def _add_stub(sub: argparse._SubParsersAction, command: str, module: str) -> None:
    message = extra_message(command, module)
    p = sub.add_parser(command, help=f"(unavailable: needs {EXTRAS[module][0]})", add_help=False)

    def unavailable(args: argparse.Namespace) -> int:
        raise VrferError(message)
    p.set_defaults(func=unavailable, unavailable=True)  # any arguments are accepted, then refused


def build_parser(commands: Sequence[str] | None = None) -> ArgumentParser:
    parser = ArgumentParser(prog="vrfer", description="Facial-expression recognition under a VR headset.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of per-frame failures")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if commands is None else commands:
        command = name.rsplit(".", 1)[-1]
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if getattr(exc, "name", None) == name:
                continue  # that command is not written yet
            extra = missing_extra(exc)
            if extra is None:
                raise
            _add_stub(sub, command, extra)
            continue
        module.add_parser(sub)
    return parser


class _NoTraceback(logging.Filter):
    """Per-frame failures are logged once; without --verbose, as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


LOG_BYTES, LOG_BACKUPS = 1_000_000, 2  # the log file rotates: at most about 3 MB on disk


def _file_handler() -> logging.Handler | None:
    """The user's log file (``core.paths.log_file``), with tracebacks; None where it cannot be written."""
    from logging.handlers import RotatingFileHandler

    from vrfer.core.paths import log_file

    try:
        path = log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
    except OSError:
        return None  # a read-only home must not stop the program; `vrfer doctor` reports it
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    return handler


def _setup_logging(verbose: bool, command: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        handler.addFilter(_NoTraceback())
    root = logging.getLogger("vrfer")
    for old in root.handlers:
        old.close()
    # The file comes first: the console's filter strips the traceback from the shared record.
    root.handlers[:] = [h for h in (_file_handler(), handler) if h is not None]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    from vrfer import __version__

    root.info("vrfer %s %s, Python %s on %s", __version__, command, sys.version.split()[0], sys.platform)


def main(argv: Sequence[str] | None = None) -> int:
    # OpenCV and FFmpeg would print their own lines ("moov atom not found", "[ WARN:0@0.1]
    # ... chunk data is too large") beside ours; the sources report the problem in one line.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and not getattr(args, "unavailable", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    _setup_logging(args.verbose, args.command)
    try:
        return int(args.func(args) or 0)
    except VrferError as exc:
        logging.getLogger("vrfer").info("error: %s", exc)  # the log file only: stderr has it below
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(f"error: {extra_message(args.command, extra)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `vrfer run --jsonl | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
