"""``vrfer headset data|train|presence|bench``: build, train and measure the headset face locator."""
from __future__ import annotations

import argparse
from pathlib import Path

from vrfer.cli.argtypes import non_negative_float, non_negative_int, positive_int, unit_float
from vrfer.core.errors import VrferError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("headset", help="the face locator that works under a VR headset: data, train, bench")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    d = verbs.add_parser("data", help="composite FER+ Train faces, label with mediapipe, draw headsets")
    d.add_argument("--n", type=positive_int, default=3000, help="FER+ Train faces to use (default 3000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, default=Path("runs/headset/train.npz"))
    d.add_argument("--webcam", type=unit_float, default=0.0,
                   help="share of faces and negatives recorded as a webcam would (training/headset/webcam.py; default 0)")
    d.add_argument("--face-free", type=non_negative_int, default=0, metavar="N",
                   help="add N Train-side face-free frames of each kind (core.facefree) as negatives (default 0)")
    d.add_argument("--tilt", type=unit_float, default=0.0, metavar="SHARE",
                   help="share of the webcam faces seen from an angle (training/headset/webcam.py draw_tilt; default 0)")
    d.add_argument("--occluders", type=unit_float, default=0.0, metavar="SHARE",
                   help="share of each face's second headset twin drawn as a random covering thing "
                        "(training/augment.py draw_occluder: any outline, colour, rim, straps, hand; default 0)")
    d.set_defaults(func=_data)

    t = verbs.add_parser("train", help="train the locator and export assets/models/headset_locator.onnx")
    t.add_argument("--config", type=Path, default=Path("training/configs/headset.toml"))
    t.add_argument("--epochs", type=positive_int)
    t.add_argument("--threads", type=positive_int)
    t.set_defaults(func=_train)

    r = verbs.add_parser("presence", help="add the face-presence head to the locator and choose its thresholds "
                                          "(run again after train)")
    r.add_argument("--locator", type=Path, help="the locator to add the head to (default: the shipped one)")
    r.add_argument("--out", type=Path, help="where the locator with the head goes (default: the shipped one)")
    r.add_argument("--record", type=Path, default=Path("docs/results/presence.json"),
                   help="where the JSON record goes (default docs/results/presence.json)")
    r.add_argument("--features", type=Path, default=Path("runs/headset/presence_features.npz"),
                   help="collected features: read when present, else collected and written there")
    r.add_argument("--n", type=positive_int, default=150,
                   help="Train-side face-free frames per kind to fit on (default 150; faces: 4x)")
    r.add_argument("--n-choose", type=positive_int, default=75,
                   help="face-free frames per kind to choose on (default 75; Valid faces: 4x)")
    r.add_argument("--l2", type=non_negative_float, default=0.03,
                   help="L2 weight (default 0.03; 0.001, 0.01, 0.03 tried: 0.03 kept most Valid faces)")
    r.add_argument("--max-false", type=unit_float, default=0.01,
                   help="false-face rate allowed at the locator threshold (default 0.01)")
    r.add_argument("--keep-mesh", type=unit_float, default=0.99,
                   help="share of Valid faces kept at the mesh threshold (default 0.99)")
    r.add_argument("--tilt", type=unit_float, default=0.0, metavar="SHARE",
                   help="share of the webcam faces seen from an angle, as the locator's data had it (default 0)")
    r.set_defaults(func=_presence)

    b = verbs.add_parser("bench", help="found rate, geometry error, accuracy and latency on FER+ Test faces")
    b.add_argument("--n", type=positive_int, default=400, help="FER+ Test faces to try (default 400)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--split", choices=("test", "valid"),
                   help="FER+ faces for the frames: test (default; report) or valid (choose between models)")
    b.add_argument("--locator", type=Path, help="locator model (default: the shipped one)")
    b.add_argument("--model", type=Path, help="expression model (default: the shipped student)")
    b.add_argument("--heldout-n", type=int, default=300,
                   help="faces for the held-out frame family beside it (default 300; 0 skips it)")
    b.add_argument("--webcam", type=unit_float, default=0.0, metavar="SHARE",
                   help="draw this share of the pairs as the broadened family's webcam records them (80-340 px, "
                        "colour, light, blur, JPEG), with found and accuracy per family (default 0)")
    b.add_argument("--tilt", type=unit_float, default=0.0, metavar="SHARE",
                   help="share of those webcam pairs seen from an angle (training/headset/webcam.py draw_tilt; default 0)")
    b.add_argument("--json", type=Path, help="also write the summary to this file")
    b.add_argument("--figure", type=Path, help="write a JPEG of 8 headset frames (teacher red, answer green)")
    b.set_defaults(func=_bench)


def _argv(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name}", str(value)]
    return out


def _data(args: argparse.Namespace) -> int:
    from vrfer.training.headset.data import write

    write(args.n, args.seed, args.out, args.webcam, args.face_free, args.occluders, args.tilt)
    return 0


def _train(args: argparse.Namespace) -> int:
    from vrfer.training.headset.train import train_from

    print(f"wrote {train_from(args.config, args.epochs, args.threads)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    """The training family (training.headset.bench), then the held-out family (vrfer.evalframes)
    on the same split, and both side by side: the held-out one is the headline."""
    import tempfile

    from vrfer.core.face.headset import DEFAULT_LOCATOR
    from vrfer.training.headset import bench

    def report(json_path: Path | None) -> None:
        bench.report(args.n, args.seed, args.locator or DEFAULT_LOCATOR, args.model, args.figure,
                     split=args.split or "test", json_path=json_path, webcam=args.webcam, tilt=args.tilt)

    if not args.heldout_n:
        report(args.json)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.json if args.json else Path(tmp) / "training_family.json"
        report(out)
        return _heldout_beside(args, out)


def _heldout_beside(args: argparse.Namespace, out: Path) -> int:
    import json

    from vrfer.core.model import default_model_path
    from vrfer.evalframes.bench import heldout_accuracy, side_by_side, table

    split = args.split or "test"
    held = heldout_accuracy(args.model or default_model_path(), split=split, n=args.heldout_n, seed=args.seed)
    rows = json.loads(out.with_suffix(".rows.json").read_text())  # which faces the training family used
    summary = json.loads(out.read_text())
    training = {"crop": _crop_accuracy(rows, split, args.model)}
    if "accuracy" in summary["clean"]:
        training.update(plain=100 * summary["clean"]["accuracy"], headset=100 * summary["headset"]["accuracy"])
    training.update(found_plain=100 * summary["clean"]["found"], found_headset=100 * summary["headset"]["found"])
    if args.json:
        summary["heldout"] = held
        summary["training_family_crop_accuracy"] = training["crop"]
        out.write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(table(held) + side_by_side(training, held)))
    return 0


def _crop_accuracy(rows: list[dict], split: str, model: str | None) -> float:
    """The student on the dataset crops of the faces the training-family bench used (%)."""
    import cv2
    import numpy as np

    from vrfer.core.model import ExpressionModel, default_model_path
    from vrfer.core.paths import ferplus_dir
    from vrfer.core.preprocess import preprocess
    from vrfer.training.datasets import SPLIT_FOLDERS

    student = ExpressionModel(model or default_model_path())
    folder = ferplus_dir() / SPLIT_FOLDERS[split]
    right = 0
    for r in rows:
        face = cv2.imread(str(folder / r["file"]), cv2.IMREAD_GRAYSCALE)
        probs, _ = student.predict(preprocess(face, None, student.spec)[None])
        right += student.classes[int(np.argmax(probs[0]))] == r["truth"]
    return 100.0 * right / len(rows) if rows else 0.0


def _presence(args: argparse.Namespace) -> int:
    import json
    import shlex
    import sys

    from vrfer.core.face.headset import DEFAULT_LOCATOR
    from vrfer.training.headset.presence import fit_presence

    locator = args.locator or DEFAULT_LOCATOR
    if not locator.is_file():
        raise VrferError(f"{locator}: headset locator model not found")
    record = fit_presence(locator=locator, out=args.out or DEFAULT_LOCATOR, record=args.record,
                          features=args.features, n=args.n, n_choose=args.n_choose, l2=args.l2,
                          max_false=args.max_false, keep_mesh=args.keep_mesh, tilt=args.tilt,
                          command=shlex.join(["vrfer", *sys.argv[1:]]))
    print(json.dumps(record, indent=1))
    return 0
