"""Score a model on the held-out frame family, beside the same faces' dataset crops.

For each FER+ face (Valid while choosing anything, Test for the report) one ``Look`` is drawn
and two frames are made from it, bare and with a headset. Each goes through the runtime's
face finder (face mesh, then its fallbacks, as on unrelated images) and the model:

- plain accuracy and its gap to the crops; headset accuracy and its gap to plain; face found;
- the same frames with the ideal alignment (the placement undone), which splits the gap into
  what the face finder costs and what the pixels cost;
- with ``causes``: each factor of the family switched off in turn (``render.neutral``) and the
  frame drawn again; the points a factor costs are the accuracy without it minus the accuracy
  with everything on. "composition" is the crops' accuracy minus that of a frame with every
  plain factor off, ideally aligned: what the cut-out and the scene around the face cost.

``vrfer bench --heldout --split valid --heldout-n 300 [--causes]`` prints the table.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from vrfer.evalframes.render import FACTORS, Poser, draw_look, neutral, render

SPLITS = {"valid": "FER2013Valid", "test": "FER2013Test"}
PLAIN_FACTORS = tuple(f for f in FACTORS if f not in ("visor_shape", "hand"))


def heldout_accuracy(model_path: str | Path, *, split: str = "test", n: int | None = 500, seed: int = 0,
                     causes: bool = False, root: Path | None = None, locator: Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy of one model on held-out frames of ``n`` FER+ faces of ``split`` (None: all).
    ``locator``: the headset locator model (default: the shipped one)."""
    from vrfer.core.errors import DatasetError
    from vrfer.core.face import DEFAULT_LOCATOR, FaceConfig, FaceLocator, default_fallbacks
    from vrfer.core.model import ExpressionModel
    from vrfer.core.paths import ferplus_dir
    from vrfer.core.preprocess import preprocess
    from vrfer.core.ferplus import majority_faces
    from vrfer.core.types import Frame

    if split not in SPLITS:
        raise DatasetError(f"held-out frames are built from {' or '.join(SPLITS)} faces, not {split!r}")
    root = root or ferplus_dir()
    folder = root / SPLITS[split]
    if not (folder / "label.csv").is_file():
        raise DatasetError(f"the held-out benchmark needs FER+ {split} faces: {folder / 'label.csv'} is missing "
                           "(set VRFER_FERPLUS)")
    faces = majority_faces(root, SPLITS[split])
    if n is not None and n < len(faces):
        faces = random.Random(seed).sample(faces, n)
    model = ExpressionModel(model_path)
    cfg = FaceConfig(tracking=False)  # unrelated images: every frame is a new face

    def label(image: np.ndarray, transform: np.ndarray | None) -> str:
        return model.classes[int(np.argmax(model.predict(preprocess(image, transform, model.spec)[None])[0][0]))]

    rows: list[dict] = []
    t0 = time.perf_counter()
    with FaceLocator(cfg, default_fallbacks(cfg, locator)) as finder, Poser() as poser:
        index = 0

        def run(face: np.ndarray, look, headset: bool) -> tuple[str | None, str, str | None, str]:
            """(label or None, label with the ideal alignment, who posed the headset, the finder's answer)."""
            nonlocal index
            frame = render(face, look, headset=headset, poser=poser, noise_seed=int(headset))
            index += 1
            g = finder.process(Frame(frame.image, index, float(index)))
            return (label(frame.image, g.transform) if g is not None else None,
                    label(frame.image, frame.ideal), frame.pose_source, answer(g, finder.last_reason))

        for i, (file, truth) in enumerate(faces):
            face = cv2.imread(str(folder / file), cv2.IMREAD_GRAYSCALE)
            if face is None:
                raise DatasetError(f"{folder / file} cannot be read as an image")
            look = draw_look(np.random.default_rng([seed, i]))
            row: dict = {"file": file, "truth": truth, "crop": label(face, None), "size": look.size,
                         "light": look.light, "shape": look.headset.shape, "shell": look.headset.shell,
                         "hand": look.headset.hand, "camera": camera_group(look)}
            for kind, headset in (("plain", False), ("headset", True)):
                row[kind], row[f"{kind}_ideal"], source, row[f"{kind}_answer"] = run(face, look, headset)
                if headset:
                    row["pose_source"] = source
            if causes:
                clean = look  # every plain factor off: what the cut-out and the scene alone cost
                for factor in PLAIN_FACTORS:
                    clean = neutral(clean, factor)
                row["clean_ideal"] = run(face, clean, False)[1]
                for factor in FACTORS:
                    other = neutral(look, factor)
                    if factor in PLAIN_FACTORS:
                        row[f"plain_without_{factor}"] = run(face, other, False)[0]
                    row[f"headset_without_{factor}"] = run(face, other, True)[0]
            rows.append(row)
            if progress is not None:
                progress(i + 1, len(faces))
    return summarise(rows, model=str(model_path), locator=str(locator or DEFAULT_LOCATOR), split=split, seed=seed,
                     seconds=time.perf_counter() - t0)


CAMERA_GROUPS = ("frontal", "low", "side", "low and side")


def camera_group(look) -> str:
    """Where the camera sat: "low" looks up at the face by 10 degrees or more, "side" is 10 degrees or more off."""
    low, side = look.pitch >= 10.0, abs(look.yaw) >= 10.0
    return ("low and side" if side else "low") if low else ("side" if side else "frontal")


def answer(geometry, reason: str | None) -> str:
    """The finder's answer in a word or two: ``found by <path>``, or why it refused
    (``no face here, locator`` for a presence refusal on the locator's threshold)."""
    if geometry is not None:
        return f"found by {geometry.path}"
    reason = str(reason or "no face found")
    head = reason.split(" (")[0]
    if head.startswith("no face here") and reason.endswith(")"):
        return f"{head}, {reason.rsplit(', ', 1)[-1][:-1]}"  # the path whose threshold refused it
    return head


def summarise(rows: Sequence[dict], **extra: object) -> dict:
    """Accuracies (%), gaps (points) and found rates from per-face rows."""
    n = len(rows)

    def acc(key: str, subset: Sequence[dict] = rows) -> float:
        return 100.0 * sum(r.get(key) == r["truth"] for r in subset) / len(subset) if subset else 0.0

    def found(key: str, subset: Sequence[dict] = rows) -> float:
        return 100.0 * sum(r[key] is not None for r in subset) / len(subset) if subset else 0.0

    out: dict = {**extra, "faces": n}
    a = {k: acc(k) for k in ("crop", "plain", "plain_ideal", "headset", "headset_ideal")}
    out["accuracy"] = a
    out["found_pct"] = {"plain": found("plain"), "headset": found("headset")}
    out["gap"] = {
        "plain_to_crops": a["crop"] - a["plain"],  # a missed face counts as wrong
        "headset_to_plain": a["plain"] - a["headset"],
        "plain_alignment": a["plain_ideal"] - a["plain"],  # what the face finder costs
        "headset_alignment": a["headset_ideal"] - a["headset"],
    }
    # Where the finder's misses sit: each answer's count (rows from older runs may lack them).
    out["answers"] = {kind: dict(Counter(r[f"{kind}_answer"] for r in rows if f"{kind}_answer" in r).most_common())
                      for kind in ("plain", "headset")}
    out["headset_posed_by"] = {s: sum(r.get("pose_source") == s for r in rows) for s in ("mesh", "placement")}
    groups = {"light": ("normal", "low", "back"), "shape": ("box", "goggle", "wide", "slim"),
              "shell": ("white", "light_grey", "dark_grey", "black", "blue_grey"), "hand": (None, "side", "under")}
    if rows and "camera" in rows[0]:
        groups["camera"] = CAMERA_GROUPS

    out["by"] = {g: {str(v): {"faces": len(sub), "crop": acc("crop", sub), "plain": acc("plain", sub),
                              "headset": acc("headset", sub), "found_plain": found("plain", sub),
                              "found_headset": found("headset", sub)}
                     for v in values if (sub := [r for r in rows if r[g] == v])}
                 for g, values in groups.items()}
    sizes = {}
    for lo, hi in ((80, 120), (120, 180), (180, 240), (240, 301)):
        sub = [r for r in rows if lo <= r["size"] < hi]
        if sub:
            sizes[f"{lo}-{hi - 1}"] = {"faces": len(sub), "crop": acc("crop", sub), "plain": acc("plain", sub),
                                       "headset": acc("headset", sub),
                                       "found_plain": found("plain", sub), "found_headset": found("headset", sub)}
    out["by"]["face_size_px"] = sizes
    if rows and "plain_without_blur" in rows[0]:
        # Points each factor costs: accuracy with it switched off minus accuracy with everything on.
        table = {"composition": {"plain": a["crop"] - acc("clean_ideal"), "headset": None},
                 "alignment": {"plain": out["gap"]["plain_alignment"], "headset": out["gap"]["headset_alignment"]}}
        for factor in FACTORS:
            table[factor] = {kind: (acc(f"{kind}_without_{factor}") - a[kind]) if f"{kind}_without_{factor}" in rows[0]
                             else None for kind in ("plain", "headset")}
        out["causes"] = table
        # The same for the found rate: a cost that is mostly here is the finder's, not the model's.
        found_all = out["found_pct"]
        out["causes_found"] = {
            factor: {kind: (found(f"{kind}_without_{factor}") - found_all[kind])
                     if f"{kind}_without_{factor}" in rows[0] else None for kind in ("plain", "headset")}
            for factor in FACTORS}
    return out


def table(h: dict) -> list[str]:
    """The summary as text lines."""
    a, g, f = h["accuracy"], h["gap"], h["found_pct"]
    out = [f"held-out family: {h['faces']} FER+ {h['split']} faces (seed {h['seed']}), model {h['model']}, "
           f"{h['seconds']:.0f} s",
           f"  dataset crops {a['crop']:.2f} %",
           f"  plain frames   {a['plain']:6.2f} %  gap to crops {g['plain_to_crops']:5.2f} points, face found "
           f"{f['plain']:.1f} % (ideal alignment {a['plain_ideal']:.2f} %)",
           f"  headset frames {a['headset']:6.2f} %  gap to plain {g['headset_to_plain']:5.2f} points, face found "
           f"{f['headset']:.1f} % (ideal alignment {a['headset_ideal']:.2f} %; headsets posed by "
           + ", ".join(f"{k} {v}" for k, v in h["headset_posed_by"].items()) + ")"]
    for kind, counts in h.get("answers", {}).items():
        if counts:
            out.append(f"  finder on {kind} frames: " + "; ".join(f"{k} {v}" for k, v in counts.items()))
    for group, values in h["by"].items():
        out.append(f"  by {group}: " + "; ".join(
            f"{k} ({v['faces']}) {v['crop']:.0f}/{v['plain']:.0f}/{v['headset']:.0f}"
            + (f" found {v['found_plain']:.0f}/{v['found_headset']:.0f}" if "found_headset" in v else "")
            for k, v in values.items()) + "  (crop/plain/headset %, found plain/headset %)")
    if "causes" in h:
        out.append("  points each cause costs (accuracy without it minus with everything on)   plain  headset")
        found = h.get("causes_found", {})
        for cause, v in h["causes"].items():
            cells = "  ".join(f"{v[k]:7.2f}" if v[k] is not None else f"{'-':>7}" for k in ("plain", "headset"))
            f = found.get(cause)
            more = ("   found " + " / ".join(f"{f[k]:+.1f}" if f[k] is not None else "-" for k in ("plain", "headset"))
                    if f else "")
            out.append(f"    {cause:<66} {cells}{more}")
    return out


def side_by_side(training: dict, heldout: dict) -> list[str]:
    """Both families' headline figures in one table. ``training`` holds whichever of
    crop/plain/headset/found_plain/found_headset the training-family run measured (%)."""

    def cell(v: float | None, width: int = 8) -> str:
        return f"{v:{width}.2f}" if v is not None else f"{'-':>{width}}"

    def row(name: str, d: dict) -> str:
        crop, plain, headset = d.get("crop"), d.get("plain"), d.get("headset")
        return (f"  {name:<30}{cell(plain)}{cell(None if crop is None or plain is None else crop - plain, 10)}"
                f"{cell(headset)}{cell(None if plain is None or headset is None else plain - headset, 10)}"
                f"{cell(d.get('found_plain'), 9)}{cell(d.get('found_headset'), 9)}")

    a, f = heldout["accuracy"], heldout["found_pct"]
    held = {"crop": a["crop"], "plain": a["plain"], "headset": a["headset"], "found_plain": f["plain"],
            "found_headset": f["headset"]}
    return ["frame family (accuracy %, gaps in points)  plain  to crops  headset  to plain  found:plain  headset",
            row(f"held-out ({heldout['split']}, headline)", held), row("training family", training)]


def write_figure(path: Path, *, split: str = "valid", seed: int = 0, pairs: int = 8) -> None:
    """A grid of bare | headset frame pairs, for the docs."""
    from vrfer.core.paths import ferplus_dir
    from vrfer.core.ferplus import majority_faces

    root = ferplus_dir()
    faces = random.Random(seed).sample(majority_faces(root, SPLITS[split]), pairs)
    tiles = []
    with Poser() as poser:
        for i, (file, _) in enumerate(faces):
            face = cv2.imread(str(root / SPLITS[split] / file), cv2.IMREAD_GRAYSCALE)
            look = draw_look(np.random.default_rng([seed, i]))
            tiles.append(np.hstack([cv2.resize(render(face, look, headset=h, poser=poser).image, (320, 240),
                                               interpolation=cv2.INTER_AREA) for h in (False, True)]))
    grid = np.vstack([np.hstack(tiles[i:i + 2]) for i in range(0, len(tiles) - 1, 2)])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])

