"""``vrfer bench template|adapt|teacher-cache``: the measuring tools beside the runtime benchmark.

::

    vrfer bench template [--n N] [--out PATH]        measure the face template on FER+ Train faces
    vrfer bench adapt [--model M] [--draws N]        personal calibration under camera shift (FER+ Test)
    vrfer bench adapt --split valid --sweep 1,3,10   the prior strength's sweep (choose on Valid)
    vrfer bench teacher-cache CONFIG [--steps N]     distillation step time, teacher online vs cached
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from vrfer.cli.argtypes import positive_int


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    t = verbs.add_parser("template", help="measure the face template on FER+ Train faces and write it",
                         description="Median mesh landmarks on FER+ Train faces: the template live faces are "
                                     "aligned to (assets/face_template.json).")
    t.add_argument("--n", dest="template_n", type=positive_int, default=3000, metavar="N",
                   help="FER+ Train images to sample (default 3000)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, help="where to write it (default: the shipped assets/face_template.json)")
    t.set_defaults(func=_template)

    a = verbs.add_parser("adapt", help="personal calibration under a mouth camera's shift (training.adapt_bench)",
                         description="Camera shift and the personal-calibration benchmark: a profile fitted on k "
                                     "faces per class, judged on the others (docs/results.md).")
    a.add_argument("--model", type=Path, help="ONNX model with an embedding output "
                   "(default: assets/models/student.onnx or $VRFER_MODEL)")
    a.add_argument("--split", default="test", choices=("test", "valid"))
    a.add_argument("--draws", type=positive_int, default=10)
    a.add_argument("--k", type=_numbers(int), default=(5, 10, 20), help="faces per class for adaptation "
                   "(comma-separated, default 5,10,20)")
    a.add_argument("--l2", type=float, help="prior strength (default core.adapt.DEFAULT_L2)")
    a.add_argument("--sweep", type=_numbers(float), help="comma-separated l2 values: report the gain at k=10 for each")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--json", type=Path, help="write the figures here")
    a.set_defaults(func=_adapt)

    c = verbs.add_parser("teacher-cache", help="distillation step time with the teacher online vs cached, in one run")
    c.add_argument("config", type=Path, help="a student config with [kd] (e.g. training/configs/student_v3.toml)")
    c.add_argument("--steps", type=positive_int, default=20)
    c.set_defaults(func=_teacher_cache)


def _numbers(cast: type) -> Callable[[str], tuple]:
    """A ``type=`` converter for comma-separated numbers."""
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return parse


def _template(args: argparse.Namespace) -> int:
    from vrfer.bench.face import measure_template
    from vrfer.core.face import TEMPLATE_PATH
    from vrfer.core.paths import ferplus_dir

    out = args.out if args.out is not None else TEMPLATE_PATH
    data = measure_template(ferplus_dir(), args.template_n, args.seed)
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: {data['images_used']}/{data['images_tried']} faces meshed ({data['detection_rate']:.1%})")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    from vrfer.core.model import default_model_path
    from vrfer.training.adapt_bench import markdown, run_benchmark, sweep_l2

    model = args.model or default_model_path()
    if args.sweep:
        sweep_l2(model, list(args.sweep), split=args.split, draws=args.draws, seed=args.seed)
        return 0
    result = run_benchmark(model, split=args.split, ks=args.k, draws=args.draws, l2=args.l2, seed=args.seed)
    print()
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _teacher_cache(args: argparse.Namespace) -> int:
    from vrfer.training.teacher_cache import bench_online_vs_cached

    print(json.dumps(bench_online_vs_cached(args.config, args.steps)))
    return 0
