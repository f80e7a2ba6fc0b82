"""Teach the headset locator to say "nobody is there": a face-presence head, and its thresholds.

``vrfer headset presence [--n 150]`` (about 10 minutes on one core):

1. Features: the locator's last feature map (flattened, 2304 values) from its window pass, the
   pass every answer comes from, on
   - faces: FER+ **Train** faces pasted into camera-like frames, bare and under a drawn headset,
     both as ``synth`` draws them and as ``webcam`` records them (colour, JPEG, blur, low light,
     backlight, 80-300 px faces, light headsets, hands); a webcam face the locator's own pass
     misses is read in the window where it lies, as a face the mesh found is scored at run time;
   - no face: ``core.facefree`` frames, ``split="train"`` (Train-side material, seed 0), each as
     drawn and through a webcam, so that none of the webcam's marks reads as "a face". Where the
     face mesh itself answers on such a frame (a back of a head, a poster) and the locator's vetting
     pass does not drop that answer as a headset, the window it places is read too: at run time
     that answer is judged on the mesh's lower threshold, so these are the false faces the mesh
     path lets through unless the head has seen them.
2. A logistic regression on those features (L2, LBFGS): the ``presence`` logit.
3. Thresholds, chosen on FER+ **Valid** faces and on Train-side face-free frames of another seed
   (never on the benchmark family): for the locator's own answers, the lowest threshold whose
   false-face rate is at most ``--max-false`` while keeping as many faces as it can; for answers
   the face mesh found, a lower one (two finders agree), keeping ``--keep-mesh`` of Valid faces.
4. Writes the locator ONNX again with a ``presence`` output (one Gemm on the same features, so
   no extra pass) and the thresholds as ``vrfer.presence_threshold`` / ``vrfer.presence_threshold_mesh``
   metadata, plus a JSON record of how they were chosen (``docs/results/presence.json``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.errors import DatasetError
from vrfer.core.facefree import KINDS, face_free_frames
from vrfer.core.face.headset import DEFAULT_LOCATOR, HeadsetLocator, net_input, plausible, window_around
from vrfer.core.paths import ferplus_dir
from vrfer.core.ferplus import majority_faces
from vrfer.training.headset.synth import camera, compose, draw_headset, random_headset
from vrfer.training.headset.webcam import draw_webcam, shoot, webcam_pair

FEATURES = "/fc/fc.0/Flatten_output_0"  # the last conv map, flattened: what the three heads read through fc


def _session(path: Path):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    if FEATURES not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(FEATURES))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class _Features:
    """The locator's two passes, as at run time; the window pass's features and the face scores."""

    def __init__(self, path: Path) -> None:
        self.vetter = HeadsetLocator(path, zoom=True)  # the head is fitted for the runtime that zooms
        self.anchors = self.vetter.info.anchors
        self.session = _session(path)

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        x = (img.astype(np.float32) * (2.0 / 255.0) - 1.0)[None, None]
        points, face, feats = self.session.run(["points", "face", FEATURES], {"input": x})
        return points[0], float(1 / (1 + np.exp(-float(face.ravel()[0])))), feats[0]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(features of the window pass, the lower of the two passes' face scores), or None
        when no pass places a plausible face (the locator then answers nothing). When the
        whole-frame pass finds no face, the zoom tiles look again, as at run time."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self.vetter.first_pass(gray)  # the runtime's own pass 1, tiles included
        if found is None:
            return None
        pts, face = found
        win = window_around(pts, self.anchors)
        _, fine, feats = self._run(net_input(gray, win))
        return feats, min(face, fine)

    def placed(self, image: np.ndarray, place: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(features, face score) of the window where ``place`` (canonical -> frame) puts the face:
        how a face the mesh found is scored when the locator's own pass missed it."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        pts = self.anchors @ place[:, :2].T + place[:, 2]
        if not plausible(pts, self.anchors, gray.shape[:2]):
            return None
        _, fine, feats = self._run(net_input(gray, window_around(pts, self.anchors)))
        return feats, fine


def _mesh_finder():
    """The runtime's face mesh alone (no fallbacks, no refinement, each frame afresh)."""
    from vrfer.core.face.locator import FaceConfig, FaceLocator

    return FaceLocator(FaceConfig(tracking=False, refine=False))


def collect(feat: _Features, folder: str, n_free: int, n_faces: int, free_seed: int, seed: int,
            tilt: float = 0.0) -> dict[str, np.ndarray]:
    """Features of every input with a plausible answer: ``x``, ``y`` (1 = face), ``f`` (face score),
    ``kind``, ``src`` (``locator``: the locator's own window; ``mesh``: the window of a face the mesh
    found on a face-free frame); ``total`` counts the face-free frames, answered or not (the
    false-face rate's denominator)."""
    from vrfer.core.types import Frame

    xs, ys, scores, kinds, srcs = [], [], [], [], []
    total = 0

    def keep(out: tuple[np.ndarray, float] | None, y: int, kind: str, src: str) -> None:
        if out is not None:
            xs.append(out[0])
            scores.append(out[1])
            ys.append(y)
            kinds.append(kind)
            srcs.append(src)

    def add(image: np.ndarray, y: int, kind: str, place: np.ndarray | None = None) -> None:
        out = feat(image)
        if out is None and place is not None:
            out = feat.placed(image, place)
        keep(out, y, kind, "locator")

    def add_free(image: np.ndarray, kind: str) -> None:
        # The locator's row counts even when the mesh answers (then the runtime never asks the
        # locator): one frame may count twice, which only errs towards a higher threshold.
        add(image, 0, kind)
        frame = Frame(image, 0, 0.0)
        found = mesh.process(frame)
        if found is not None and not feat.vetter.distrusts(frame, found):  # as FaceLocator judges the mesh's answer
            keep(feat.placed(image, cv2.invertAffineTransform(found.transform)), 0, kind, "mesh")

    root = ferplus_dir()
    faces = majority_faces(root, folder)  # first: a missing FER+ folder fails before the long part
    free_rng = np.random.default_rng([free_seed, 1])
    with _mesh_finder() as mesh:
        for f in face_free_frames(n_free, split="train", seed=free_seed):
            total += 2
            add_free(f.image, f.kind)
            # The same scene through a webcam (JPEG, blur, low light, colour noise): none of that may read as a face.
            add_free(shoot(f.image, draw_webcam(free_rng)), f.kind)
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(faces), min(n_faces, len(faces)), replace=False):
        gray = cv2.imread(str(root / folder / faces[i][0]), cv2.IMREAD_GRAYSCALE)
        frame, place = compose(gray, rng, (110, 340), 20.0)
        add(camera(frame, rng), 1, "clean")
        add(camera(draw_headset(frame, cv2.invertAffineTransform(place), random_headset(rng), rng), rng), 1, "headset")
        pair = webcam_pair(gray, rng, tilt=tilt)  # the broadened family; a missed face is scored where the mesh would
        add(pair.clean, 1, "webcam_clean", pair.placement)
        add(pair.headset, 1, "webcam_headset", pair.placement)
    return {"x": np.stack(xs).astype(np.float32), "y": np.array(ys), "f": np.array(scores), "kind": np.array(kinds),
            "src": np.array(srcs), "total": np.array(total)}


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised features; returns (weights, bias) on the raw features."""
    import torch

    mu, sd = x.mean(0), x.std(0) + 1e-3
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    wn = w.detach().numpy().astype(np.float64) / sd
    return wn.astype(np.float32), float(b.item() - float(mu @ wn))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def choose(scores: np.ndarray, data: dict[str, np.ndarray], min_face: float, max_false: float,
           keep_mesh: float) -> dict:
    """Thresholds on presence probabilities (see the module docstring) and the figures behind them.

    The mesh's threshold keeps ``keep_mesh`` of the faces; the locator's is the lowest whose
    false faces, both paths together (the locator's own answers at its threshold and the mesh's
    answers at the mesh's), are at most ``max_false``. False-face rates are over every face-free
    frame (``total``), answered or not.
    """
    y, kind = data["y"], data["kind"]
    src = data["src"] if "src" in data else np.full(len(y), "locator")
    by_mesh = src == "mesh"
    faces, free = (y == 1) & ~by_mesh, y == 0
    proposed = (data["f"] >= min_face) & ~by_mesh  # the locator answers at all only above its face score
    total = int(data["total"])
    mesh_q = float(np.quantile(scores[faces], 1.0 - keep_mesh))

    def false_faces(t_locator: float, t_mesh: float) -> np.ndarray:
        return free & (((scores >= t_locator) & proposed) | ((scores >= t_mesh) & by_mesh))

    grid = np.unique(np.round(np.concatenate([scores, [0.0, 1.0]]), 4))
    mesh_raised = False
    if (free & by_mesh & (scores >= mesh_q)).sum() / total > max_false:
        # The mesh alone would break the limit: its threshold rises until it does not, and says so.
        mesh_q = next(float(t) for t in grid if (free & by_mesh & (scores >= t)).sum() / total <= max_false)
        mesh_raised = True
    locator_t = 1.0
    for t in grid:  # the lowest threshold (most faces kept) with at most max_false false faces
        if false_faces(t, min(mesh_q, t)).sum() / total <= max_false:
            locator_t = float(t)
            break
    mesh_t = min(mesh_q, locator_t)

    def figures(t: float) -> dict:
        accepted = (scores >= t) & proposed
        false = false_faces(t, min(mesh_t, t))
        return {"faces_kept": round(float(accepted[faces].mean()), 4),
                "false_face_rate": round(float(false.sum() / total), 4),
                "false_faces_by_kind": {k: int(false[kind == k].sum()) for k in KINDS},
                "false_faces_by_the_mesh": int((false & by_mesh).sum()),
                "faces_kept_by_kind": {k: round(float(accepted[faces & (kind == k)].mean()), 4)
                                       for k in ("clean", "headset", "webcam_clean", "webcam_headset")
                                       if (faces & (kind == k)).any()}}

    def mesh_figures(t: float) -> dict:  # every answer judged on the mesh's threshold (the mesh or the refinement confirmed it)
        accepted = (scores >= t) & (proposed | by_mesh)
        return {"faces_kept": round(float(accepted[faces].mean()), 4),
                "false_face_rate": round(float(accepted[free].sum() / total), 4),
                "false_faces_by_kind": {k: int(accepted[free & (kind == k)].sum()) for k in KINDS},
                "false_faces_by_the_mesh": int((accepted & free & by_mesh).sum()),
                "faces_kept_by_kind": {k: round(float(accepted[faces & (kind == k)].mean()), 4)
                                       for k in ("clean", "headset", "webcam_clean", "webcam_headset")
                                       if (faces & (kind == k)).any()}}

    return {"locator": round(locator_t, 4), "mesh": round(mesh_t, 4), "face_free_frames": total,
            "mesh_answers_on_face_free_frames": int(by_mesh.sum()), "mesh_threshold_raised_for_false_faces": mesh_raised,
            "at_locator_threshold": figures(locator_t), "at_mesh_threshold": mesh_figures(mesh_t),
            "at_0.5": figures(0.5)}


def export(path: Path, out: Path, w: np.ndarray, b: float, thresholds: dict) -> Path:
    """The locator ONNX with a ``presence`` logit output and the thresholds in its metadata."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    for name in ("presence.weight", "presence.bias"):
        for init in list(graph.initializer):
            if init.name == name:
                graph.initializer.remove(init)
    for node in list(graph.node):
        if "presence" in node.output:
            graph.node.remove(node)
    for o in list(graph.output):
        if o.name in ("presence", FEATURES):
            graph.output.remove(o)
    graph.initializer.extend([numpy_helper.from_array(w[None, :].astype(np.float32), "presence.weight"),
                              numpy_helper.from_array(np.array([b], np.float32), "presence.bias")])
    graph.node.append(helper.make_node("Gemm", [FEATURES, "presence.weight", "presence.bias"], ["presence"],
                                       name="/presence/Gemm", transB=1))
    graph.output.append(helper.make_tensor_value_info("presence", onnx.TensorProto.FLOAT, ["batch", 1]))
    meta = {p.key: p.value for p in model.metadata_props}
    # The thresholds counted the zoom tiles' false faces, so the runtime may look there.
    meta.update({"vrfer.presence_threshold": str(thresholds["locator"]),
                 "vrfer.presence_threshold_mesh": str(thresholds["mesh"]), "vrfer.zoom": "1"})
    del model.metadata_props[:]
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def fit_presence(*, locator: Path = DEFAULT_LOCATOR, out: Path = DEFAULT_LOCATOR,
                 record: Path = Path("docs/results/presence.json"),
                 features: Path = Path("runs/headset/presence_features.npz"), n: int = 150, n_choose: int = 75,
                 l2: float = 0.03, max_false: float = 0.01, keep_mesh: float = 0.99, tilt: float = 0.0,
                 command: str = "") -> dict:
    """Collect (or read) the features, fit the head, choose its thresholds, write ``out`` and ``record``.
    ``tilt``: the share of webcam faces seen from an angle (``webcam.draw_tilt``). Returns the record.
    ``vrfer headset presence`` is the command line."""
    t0 = time.time()
    if features.is_file():
        cached = np.load(features)
        if "tr_src" not in cached:
            raise DatasetError(f"{features}: collected before the mesh's own false faces were read; "
                               "delete it to collect the features again")
        if "zoom" not in cached:
            raise DatasetError(f"{features}: collected before the locator looked in zoom tiles; "
                               "delete it to collect the features again")
        if "tilt" not in cached or float(cached["tilt"]) != tilt:
            had = f"{float(cached['tilt']):g}" if "tilt" in cached else "unrecorded"
            raise DatasetError(f"{features}: collected with a camera-angle share of {had}, not {tilt:g}; "
                               "delete it to collect the features again")
        train = {k: cached["tr_" + k] for k in ("x", "y", "f", "kind", "src", "total")}
        choose_on = {k: cached["va_" + k] for k in ("x", "y", "f", "kind", "src", "total")}
    else:
        feat = _Features(locator)
        train = collect(feat, "FER2013Train", n, 4 * n, free_seed=0, seed=11, tilt=tilt)
        choose_on = collect(feat, "FER2013Valid", n_choose, 4 * n_choose, free_seed=1, seed=12, tilt=tilt)
        features.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(features, **{f"tr_{k}": v for k, v in train.items()},
                            **{f"va_{k}": v for k, v in choose_on.items()}, zoom=np.array(feat.vetter.zoom),
                            tilt=np.array(tilt))
    w, b = fit(train["x"], train["y"], l2)
    scores = _sigmoid(choose_on["x"] @ w + b)
    min_face = HeadsetLocator(locator).min_score
    thresholds = choose(scores, choose_on, min_face, max_false, keep_mesh)
    fitted = choose(_sigmoid(train["x"] @ w + b), train, min_face, max_false, keep_mesh)
    family = ("bare and under a drawn headset, each as synth draws it and as training.headset.webcam "
              "records it (colour, JPEG, blur, low light, backlight, 80-300 px, light headsets, hands)")
    result = {
        "command": command,
        "fit_on": {"faces": f"FER2013Train (seed 11), {family}",
                   "face_free": "core.facefree split=train seed 0, as drawn and through a webcam",
                   "face_free_frames": int(train["total"]),
                   "inputs_with_an_answer": int(len(train["y"])), "l2": l2,
                   # The same threshold's figures on the inputs it was fitted on (the chosen ones are Valid's):
                   "at_a_threshold_chosen_here": fitted["at_locator_threshold"]},
        "chosen_on": {"faces": f"FER2013Valid (seed 12), {family}",
                      "face_free": "core.facefree split=train seed 1, as drawn and through a webcam",
                      "inputs_with_an_answer": int(len(choose_on["y"])),
                      "max_false": max_false, "keep_mesh": keep_mesh},
        "webcam_tilt": tilt,
        "thresholds": thresholds, "seconds": round(time.time() - t0, 1),
    }
    export(locator, out, w, b, thresholds)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(result, indent=1) + "\n")
    return result
