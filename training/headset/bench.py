"""Benchmark the face finders on held-out FER+ **Test** faces, with and without a drawn headset.

``vrfer headset bench --n 400`` (``report``) prints:

- found rate on clean and headset frames: mesh alone, and mesh -> headset locator (the runtime
  order for unrelated images: no tracking, no ROI);
- geometry error against the teacher (mediapipe on the clean twin), as the mean distance of
  the five template anchors divided by the teacher's inter-ocular distance;
- expression accuracy through locate -> preprocess -> student on the same faces (a frame
  with no face found counts as wrong), and on headset frames with the teacher's geometry
  (what the drawn occlusion alone costs, locator error aside);
- latency of the headset locator itself (two passes on a new face; one pass while tracking).

Every frame pair is built as the training frames are (``training.headset.synth.make_sample``),
from Test faces the locator never saw; pairs whose clean frame the teacher cannot mesh are
left out (the headset is placed with the teacher's geometry) and counted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.errors import DatasetError
from vrfer.core.ferplus import SPLIT_FOLDERS, majority_faces
from vrfer.core.face import FaceConfig, FaceLocator, default_fallbacks
from vrfer.core.face.headset import HeadsetLocator
from vrfer.core.paths import ferplus_dir
from vrfer.core.preprocess import preprocess
from vrfer.core.types import FaceGeometry, Frame
from vrfer.training.headset.synth import Teacher, anchors, frame_points, make_sample, placed_square
from vrfer.training.headset.webcam import webcam_sample


def _student(path: Path | None):
    from vrfer.core.model import DEFAULT_MODEL, ExpressionModel

    if path is None:
        path = DEFAULT_MODEL
    return ExpressionModel(path) if Path(path).is_file() else None


SPLITS = ("test", "valid")  # never train: the locator learnt from it


def run(n: int, seed: int, locator: Path, model: Path | None, figure: Path | None = None,
        split: str = "test", webcam: float = 0.0, tilt: float = 0.0) -> dict:
    """``webcam``: the share of pairs drawn as ``training.headset.webcam.webcam_sample`` records them
    (colour, 80-340 px, the webcam's light, blur and JPEG, light headsets, hands); the rest as
    ``synth.make_sample`` draws them."""
    root = ferplus_dir()
    if split not in SPLITS:
        raise DatasetError(f"the headset benchmark builds frames from {' or '.join(SPLITS)} faces, not {split!r}")
    folder = SPLIT_FOLDERS[split]
    faces = majority_faces(root, folder)
    rng = np.random.default_rng(seed)
    picked = [faces[i] for i in rng.choice(len(faces), min(n, len(faces)), replace=False)]
    student = _student(model)
    teacher = Teacher()
    cfg = FaceConfig(tracking=False)
    finder = FaceLocator(cfg, default_fallbacks(cfg, locator=locator))
    tpl = anchors()
    rows, skipped, tiles = [], 0, []
    try:
        for i, (file, label) in enumerate(picked):
            gray = cv2.imread(str(root / folder / file), cv2.IMREAD_GRAYSCALE)
            family = "webcam" if webcam > 0 and rng.random() < webcam else "synth"
            s = (webcam_sample(gray, teacher, rng, tilt=tilt)[0] if family == "webcam"
                 else make_sample(gray, teacher, rng))
            if s is None:
                skipped += 1
                continue
            iod = float(np.linalg.norm(s.points[0] - s.points[1]))
            # Lowest canonical row the visor reaches at its centre (the student sees rows 24..47).
            bottom = float(tpl[:2, 1].mean() + s.hs.dy + s.hs.height / 2)
            row = {"file": file, "truth": label, "shell": s.hs.shell, "extra": s.hs.extra, "visor_bottom": bottom,
                   "family": family, "side": placed_square(s.placement)[1]}
            for kind, image in (("clean", s.clean), ("headset", s.headset)):
                t = time.perf_counter()
                g = finder.process(Frame(image, i, t))
                row[f"{kind}_ms"] = (time.perf_counter() - t) * 1e3
                row[f"{kind}_path"] = g.path if g else None
                if figure is not None and kind == "headset" and g is not None and len(tiles) < 8:
                    tiles.append(_tile(image, frame_points(g.transform, tpl), s.points, g.path))
                row[f"{kind}_err"] = (float(np.linalg.norm(frame_points(g.transform, tpl) - s.points, axis=1).mean()
                                            / iod) if g else None)
                if student is not None:
                    pred = None
                    if g is not None:
                        probs, _ = student.predict(preprocess(image, g.transform, student.spec)[None])
                        pred = student.classes[int(np.argmax(probs[0]))]
                    row[f"{kind}_pred"] = pred
            if student is not None:  # the teacher's geometry on the headset frame: what occlusion alone costs
                probs, _ = student.predict(preprocess(s.headset, s.transform, student.spec)[None])
                row["headset_teacher_pred"] = student.classes[int(np.argmax(probs[0]))]
            rows.append(row)
    finally:
        teacher.close()
        finder.close()
    if figure is not None and tiles:
        figure.parent.mkdir(parents=True, exist_ok=True)
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
        grid = np.vstack([np.hstack(tiles[i:i + 4]) for i in range(0, len(tiles), 4)])
        cv2.imwrite(str(figure), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return {"rows": rows, "skipped": skipped, "student": None if student is None else str(student.path),
            "split": split, "webcam": webcam, "latency": _latency(locator, [r for r in rows], seed, folder=folder)}


def _tile(image: np.ndarray, found: np.ndarray, teacher: np.ndarray, path: str) -> np.ndarray:
    """A 320x240 view: the teacher's anchors (from the clean twin) in red, the answer in green."""
    img = image.copy()
    for p in teacher:
        cv2.circle(img, (int(round(p[0])), int(round(p[1]))), 5, (0, 0, 255), -1, cv2.LINE_AA)
    for p in found:
        cv2.circle(img, (int(round(p[0])), int(round(p[1]))), 5, (0, 255, 0), 2, cv2.LINE_AA)
    img = cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA)
    cv2.putText(img, path, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(img, path, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _latency(locator: Path, rows: list[dict], seed: int, n: int = 200, folder: str = "FER2013Test") -> dict:
    """The locator alone: vetting a mesh answer on a clean frame (1 pass), a new face under a headset
    (2 passes) and a held face (1 pass). The machine's load average is reported beside them."""
    teacherless = np.random.default_rng(seed + 1)
    loc = HeadsetLocator(locator, hold_s=0.0)
    root = ferplus_dir()
    from vrfer.training.headset.synth import compose, draw_headset, random_headset

    frames, clean = [], []
    for r in rows[:20]:
        gray = cv2.imread(str(root / folder / r["file"]), cv2.IMREAD_GRAYSCALE)
        frame, place = compose(gray, teacherless)
        clean.append((frame, cv2.invertAffineTransform(place)))
        frames.append(draw_headset(frame, cv2.invertAffineTransform(place), random_headset(teacherless), teacherless))
    vet = []  # what every frame the mesh answers pays: one pass judging whether a headset is there
    for k in range(n):
        frame, transform = clean[k % len(clean)]
        g = FaceGeometry(transform=transform, box=(0.0, 0.0, 1.0, 1.0), path="mesh")
        t = time.perf_counter()
        loc.distrusts(Frame(frame, k, float(k)), g)
        vet.append((time.perf_counter() - t) * 1e3)
    loc.reset()
    cold, held = [], []
    for k in range(n):
        img = frames[k % len(frames)]
        t = time.perf_counter()
        loc.locate(img)
        cold.append((time.perf_counter() - t) * 1e3)
    loc = HeadsetLocator(locator, hold_s=1e9)
    loc.locate(frames[0])
    for k in range(n):
        t = time.perf_counter()
        loc.locate(frames[0])
        held.append((time.perf_counter() - t) * 1e3)
    q = lambda a, p: round(float(np.percentile(a[10:], p)), 3)  # noqa: E731
    return {"new_face_p50": q(cold, 50), "new_face_p99": q(cold, 99), "tracking_p50": q(held, 50),
            "tracking_p99": q(held, 99), "vet_mesh_p50": q(vet, 50), "vet_mesh_p99": q(vet, 99),
            "load_average": round(os.getloadavg()[0], 2)}


def summarise(result: dict) -> dict:
    rows = result["rows"]
    out: dict = {"split": result.get("split", "test"), "pairs": len(rows), "skipped_teacher_missed": result["skipped"],
                 "student": result["student"]}
    for kind in ("clean", "headset"):
        paths = [r[f"{kind}_path"] for r in rows]
        errs = np.array([r[f"{kind}_err"] for r in rows if r[f"{kind}_err"] is not None])
        out[kind] = {
            "found": round(sum(p is not None for p in paths) / len(rows), 4),
            "found_mesh_only": round(sum(p == "mesh" for p in paths) / len(rows), 4),
            "by_path": {str(p): paths.count(p) for p in sorted(set(paths), key=str)},
            "nme_median": round(float(np.median(errs)), 4) if len(errs) else None,
            "nme_mean": round(float(errs.mean()), 4) if len(errs) else None,
            "nme_p90": round(float(np.percentile(errs, 90)), 4) if len(errs) else None,
            "nme_median_by_path": {p: round(float(np.median([r[f"{kind}_err"] for r in rows if r[f"{kind}_path"] == p])), 4)
                                   for p in sorted({p for p in paths if p})},
            "locate_ms_p50": round(float(np.median([r[f"{kind}_ms"] for r in rows])), 3),
        }
        if result["student"]:
            out[kind]["accuracy"] = round(float(np.mean([r[f"{kind}_pred"] == r["truth"] for r in rows])), 4)
            out[kind]["accuracy_by_path"] = {
                p: round(float(np.mean([r[f"{kind}_pred"] == r["truth"] for r in rows if r[f"{kind}_path"] == p])), 4)
                for p in sorted({p for p in paths if p})}
    if result["student"]:
        hands = [r for r in rows if r["extra"]]
        bare = [r for r in rows if not r["extra"]]
        out["headset_accuracy_no_hand_or_mic"] = round(float(np.mean([r["headset_pred"] == r["truth"] for r in bare])), 4)
        out["clean_accuracy_same_faces"] = round(float(np.mean([r["clean_pred"] == r["truth"] for r in bare])), 4)
        out["hand_or_mic_pairs"] = len(hands)
        out["headset_accuracy_teacher_geometry"] = round(float(np.mean(
            [r["headset_teacher_pred"] == r["truth"] for r in rows])), 4)
        # Does the gap come from finding the face or from the visor reaching into the student's rows?
        bands = {"visor_above_row_26": lambda b: b <= 26, "visor_rows_26_to_30": lambda b: 26 < b <= 30,
                 "visor_below_row_30": lambda b: b > 30}
        out["accuracy_by_visor_bottom_no_hand_or_mic"] = {
            name: {"pairs": len(sel), "clean": round(float(np.mean([r["clean_pred"] == r["truth"] for r in sel])), 4),
                   "headset": round(float(np.mean([r["headset_pred"] == r["truth"] for r in sel])), 4),
                   "headset_teacher_geometry": round(float(np.mean(
                       [r["headset_teacher_pred"] == r["truth"] for r in sel])), 4)}
            for name, test in bands.items() if (sel := [r for r in bare if test(r["visor_bottom"])])}
    if result.get("webcam"):
        # Each family alone, and the webcam family's smallest faces (the whole-frame passes see them smallest).
        groups = {"synth": [r for r in rows if r.get("family") == "synth"],
                  "webcam": [r for r in rows if r.get("family") == "webcam"],
                  "webcam_80_139_px": [r for r in rows if r.get("family") == "webcam" and r["side"] < 140]}
        out["webcam_share"] = result["webcam"]
        out["by_family"] = {name: {"pairs": len(sel), **{
            f"{kind}_{what}": round(float(np.mean([fn(r, kind) for r in sel])), 4)
            for kind in ("clean", "headset")
            for what, fn in (("found", lambda r, k: r[f"{k}_path"] is not None),
                             ("accuracy", lambda r, k: r.get(f"{k}_pred") == r["truth"]))
            if what == "found" or result["student"]}} for name, sel in groups.items() if sel}
    out["locator_latency_ms"] = result["latency"]
    return out


def report(n: int, seed: int, locator: Path, model: Path | None, figure: Path | None, *, split: str = "test",
           json_path: Path | None = None, webcam: float = 0.0, tilt: float = 0.0) -> None:
    """``run`` then print the summary as JSON; with ``json_path`` also write it there, and the
    per-face rows beside it (``.rows.json``)."""
    result = run(n, seed, locator, model, figure, split=split, webcam=webcam, tilt=tilt)
    summary = summarise(result)
    text = json.dumps(summary, indent=1)
    print(text)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")
        rows = [{k: v for k, v in r.items()} for r in result["rows"]]
        json_path.with_suffix(".rows.json").write_text(json.dumps(rows) + "\n")
