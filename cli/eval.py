"""``vrfer eval --model M.onnx --data DIR --split test``: accuracy of any exported model,
through the runtime's own preprocessing and ONNX Runtime. Needs no torch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vrfer.cli.argtypes import non_negative_int, unit_float


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="score an ONNX model on a dataset split",
                              description="Evaluate an exported model on a split, with the occlusion and "
                                          "region its metadata declares.")
    p.add_argument("--model", type=Path, required=True, metavar="M.onnx")
    p.add_argument("--data", type=Path, help="dataset folder (default: the FER+ folder, $VRFER_FERPLUS)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--dataset", default="ferplus", choices=("ferplus", "ferplus_csv", "affectnet", "folders"))
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.add_argument("--confusion", type=Path, metavar="PNG", help="also write the confusion matrix as a PNG")
    p.add_argument("--against", type=Path, metavar="B.onnx",
                   help="also score B on the same images and give McNemar's exact test of the two")
    p.add_argument("--webcam", type=non_negative_int, metavar="SEED",
                   help="score every face as the broadened training family's webcam records it (colour, 80-300 px, "
                        "light, blur, JPEG; a worn headset on half), drawn from SEED: the same view for every model")
    p.add_argument("--tilt", type=unit_float, default=0.0, metavar="SHARE",
                   help="with --webcam: this share of the faces seen from an angle, as a webcam low on a desk or "
                        "to the side sees them (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vrfer.core.paths import ferplus_dir
    from vrfer.training.evaluate import confusion_png, evaluate_model

    if args.tilt and args.webcam is None:
        from vrfer.core.errors import ConfigError

        raise ConfigError("--tilt sets the webcam view's camera angle: give --webcam SEED with it")
    root = args.data or ferplus_dir()
    data = faces = None
    if args.webcam is not None:
        import dataclasses

        from vrfer.training.datasets import load_dataset
        from vrfer.training.headset.webcam import webcam_view

        faces = load_dataset(args.dataset, root, args.split, "majority")
        data = dataclasses.replace(faces, images=webcam_view(faces.images, args.webcam, args.tilt))
    ev = evaluate_model(args.model, root, args.split, args.dataset, threads=args.threads, data=data, view_of=faces)
    versus = None
    if args.against:
        from vrfer.training.stats import mcnemar

        other = evaluate_model(args.against, root, args.split, args.dataset, threads=args.threads, data=data,
                               view_of=faces)
        m = mcnemar(other.correct, ev.correct)
        versus = {"model": other.model, "accuracy": other.accuracy, "accuracy_dedup": other.accuracy_dedup,
                  "b_against_only": m.b, "c_model_only": m.c, "p_value": m.p_value}
    if args.confusion:
        confusion_png(ev.confusion, ev.classes, args.confusion, f"{ev.model} ({args.split})")
    if args.json:
        view = {"view": _view_name(args)}
        print(json.dumps(ev.to_json() | view | ({"against": versus} if versus else {})))
        return 0
    dedup = f", {100 * ev.accuracy_dedup:.2f}% without Train duplicates (n={ev.n_dedup})" \
        if ev.accuracy_dedup is not None else ""
    view = f", {_view_name(args)} view" if args.webcam is not None else ""
    print(f"{ev.model}: {100 * ev.accuracy:.2f}% on {args.split}{view} (n={ev.n}){dedup}")
    for name, pc in ev.per_class.items():
        acc = f"{100 * pc['accuracy']:.1f}%" if pc["accuracy"] is not None else "-"
        print(f"  {name:<10} {acc:>7} (n={pc['n']})")
    if versus:
        print(f"against {versus['model']}: {100 * versus['accuracy']:.2f}%; McNemar: {versus['b_against_only']} images "
              f"only it gets right, {versus['c_model_only']} only {ev.model}, p = {versus['p_value']:.3g}")
    return 0


def _view_name(args: argparse.Namespace) -> str:
    if args.webcam is None:
        return "crops"
    return f"webcam seed {args.webcam}" + (f", tilt {args.tilt:g}" if args.tilt else "")
