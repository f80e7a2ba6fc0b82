"""``vrfer headset data|train|bench``: build, train and measure the headset face locator."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("headset", help="the face locator that works under a VR headset: data, train, bench")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    d = verbs.add_parser("data", help="composite FER+ Train faces, label with mediapipe, draw headsets")
    d.add_argument("--n", type=int, default=3000, help="FER+ Train faces to use (default 3000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="runs/headset/train.npz")
    d.set_defaults(func=_data)

    t = verbs.add_parser("train", help="train the locator and export assets/models/headset_locator.onnx")
    t.add_argument("--config", default="training/configs/headset.toml")
    t.add_argument("--epochs", type=int)
    t.add_argument("--threads", type=int)
    t.set_defaults(func=_train)

    b = verbs.add_parser("bench", help="found rate, geometry error, accuracy and latency on FER+ Test faces")
    b.add_argument("--n", type=int, default=400, help="FER+ Test faces to try (default 400)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--split", choices=("test", "valid"),
                   help="FER+ faces for the frames: test (default; report) or valid (choose between models)")
    b.add_argument("--locator", help="locator model (default: the shipped one)")
    b.add_argument("--model", help="expression model (default: the shipped student)")
    b.add_argument("--json", help="also write the summary to this file")
    b.add_argument("--figure", help="write a JPEG of 8 headset frames (teacher red, answer green)")
    b.set_defaults(func=_bench)


def _argv(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name}", str(value)]
    return out


def _data(args: argparse.Namespace) -> int:
    from vrfer.training.headset.data import main

    return main(_argv(args, ("n", "seed", "out")))


def _train(args: argparse.Namespace) -> int:
    from vrfer.training.headset.train import main

    return main(_argv(args, ("config", "epochs", "threads")))


def _bench(args: argparse.Namespace) -> int:
    from vrfer.training.headset.bench import main

    return main(_argv(args, ("n", "seed", "split", "locator", "model", "json", "figure")))
