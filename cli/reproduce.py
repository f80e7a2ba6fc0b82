"""``vrfer reproduce CONFIG``: the paper's sequence for one architecture (teacher -> student
-> classic KD -> triplet KD -> combined), exported, scored and written as results rows."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("reproduce", help="run the paper's distillation sequence for one architecture",
                              description="Train teacher, student, classic-KD and triplet-KD students and the "
                                          "combined model; export each; write OUT/results.md and results.json.")
    p.add_argument("config", type=Path, help="TOML, e.g. training/configs/paper_vggf.toml")
    p.add_argument("--out", help="output folder (default: the config's 'out')")
    p.add_argument("--epochs", type=int, metavar="N", help="override every stage's epochs")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vrfer.training.reproduce import ReproduceConfig, reproduce

    rc = ReproduceConfig.from_toml(args.config, out=args.out, epochs=args.epochs)
    reproduce(rc, progress=not args.no_progress)
    print((rc.out / "results.md").read_text(), end="")
    return 0
