"""``vrfer mouth targets|eval``: the mouth-shape head's teacher targets and its evaluation.

::

    vrfer mouth targets [--ferplus DIR] [--out DIR] [--table PATH]   mesh every FER+ Train face, fit the
                                                                     percentile table, write the targets
    vrfer mouth eval MODEL.onnx [--reference M] [--picture P] [--json J]
                                                                     the student's shapes against the
                                                                     teacher's on FER+ Test (report only)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mouth", help="the mouth-shape head: build its teacher targets, evaluate a student")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    t = verbs.add_parser("targets", help="teacher targets: the refined face mesh on every FER+ Train face")
    t.add_argument("--ferplus", type=Path, help="FER+ root (default: VRFER_FERPLUS or beside the checkout)")
    t.add_argument("--out", type=Path, help="cache folder (default runs/mouth_cache)")
    t.add_argument("--table", type=Path, help="where to write the percentile table (default assets/mouth_shapes.json)")
    t.set_defaults(func=_targets)

    e = verbs.add_parser("eval", help="how well a student's mouth shapes follow the teacher's, on FER+ Test")
    e.add_argument("model", type=Path)
    e.add_argument("--ferplus", type=Path, help="FER+ root (default: VRFER_FERPLUS or beside the checkout)")
    e.add_argument("--reference", type=Path, help="model to time against (e.g. today's student)")
    e.add_argument("--picture", type=Path, help="write a tiled picture of faces with both sets of values")
    e.add_argument("--json", type=Path, help="also write the result here")
    e.set_defaults(func=_eval)


def _targets(args: argparse.Namespace) -> int:
    from vrfer.core import mouth_shapes as ms
    from vrfer.training.mouth_targets import DEFAULT_CACHE, build_targets

    build_targets(args.ferplus, args.out or DEFAULT_CACHE, args.table or ms.TABLE_PATH)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from vrfer.training.mouth_eval import evaluate, markdown

    result = evaluate(args.model, args.ferplus, args.reference, args.picture)
    print(markdown(result))
    print(f"Test faces {result['faces']}, meshed {result['meshed']:.1%}")
    if "latency" in result:
        lat = result["latency"]
        print(f"latency predict_all: shapes p50 {lat['shapes']['p50']:.3f} ms p99 {lat['shapes']['p99']:.3f} ms; "
              f"reference p50 {lat['reference']['p50']:.3f} p99 {lat['reference']['p99']:.3f}; ratio p50 "
              f"{lat['ratio_p50']:.2f} p99 {lat['ratio_p99']:.2f}; load {lat['load_avg_1m']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0
