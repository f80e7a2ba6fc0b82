"""``vrfer export CHECKPOINT -o OUT.onnx``: a checkpoint to one ONNX file with vrfer metadata."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX with vrfer metadata",
                              description="Export a training checkpoint (last.pt/best.pt, EMA weights) or a "
                                          "combined-embedding checkpoint to one self-contained ONNX file.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx")
    p.add_argument("--name", help="model name stored in the metadata (default: the run's name)")
    p.add_argument("--flip-tta", action="store_true",
                   help="average the face and its mirror image inside the graph (twice the compute)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vrfer.training.export import export_onnx, load_for_export, training_class_prior

    net, spec, name = load_for_export(args.checkpoint)
    prior = training_class_prior(args.checkpoint)
    extra = {"class_prior": ",".join(f"{v:.6f}" for v in prior)} if prior else None
    out = export_onnx(net, spec, args.output, name=args.name or name, flip_tta=args.flip_tta, extra=extra)
    print(f"wrote {out} ({spec.region} region, occlusion {spec.occlusion}, {spec.size} px"
          f"{', flip TTA' if args.flip_tta else ''})")
    return 0
