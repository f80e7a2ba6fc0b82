"""``vrfer checkpoint convert --trust OLD NEW``: rewrite a checkpoint you trust as tensors plus plain data;
``vrfer checkpoint average A B NEW``: the weight-space average of two checkpoints of one network.

vrfer reads checkpoints without running pickled code (``training.checkpoint``); one written by
an older vrfer or another tool that holds numpy values or paths is refused until converted here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vrfer.cli.argtypes import unit_float
from vrfer.core.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("checkpoint", help="convert an old checkpoint you trust to the safe format")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    c = verbs.add_parser("convert", help="rewrite OLD (an older checkpoint holding numpy values or paths) as "
                                         "NEW, tensors plus plain data only")
    c.add_argument("old", type=Path, metavar="OLD")
    c.add_argument("new", type=Path, metavar="NEW")
    c.add_argument("--trust", action="store_true",
                   help="required: you vouch for OLD's origin (its numpy values and paths are rebuilt; any "
                        "other object is refused)")
    c.set_defaults(func=_convert)
    a = verbs.add_parser("average", help="weight-space average (1 - alpha) * A + alpha * B of two checkpoints of one "
                                         "network (a model and its fine-tune), for vrfer export")
    a.add_argument("a", type=Path, metavar="A")
    a.add_argument("b", type=Path, metavar="B")
    a.add_argument("new", type=Path, metavar="NEW")
    a.add_argument("--alpha", type=unit_float, default=0.5, help="B's share (default 0.5)")
    a.add_argument("--name", default="", help="the result's config name (default: B's)")
    a.set_defaults(func=_average)
    return p


def _average(args: argparse.Namespace) -> int:
    from vrfer.training.checkpoint import average_checkpoints

    print(f"wrote {average_checkpoints(args.a, args.b, args.alpha, args.new, args.name)}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    if not args.trust:
        raise ConfigError(f"{args.old}: converting rebuilds the numpy values and paths a checkpoint holds; add "
                          "--trust only if you trust where it came from")
    from vrfer.training.checkpoint import convert_trusted

    print(f"wrote {convert_trusted(args.old, args.new)}")
    return 0
