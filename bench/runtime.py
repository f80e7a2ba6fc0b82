"""Benchmarks that print figures: speed, end-to-end accuracy on camera-like frames, and a soak.

Three measurements, each a function returning a plain dict (``vrfer bench`` prints them):

- ``bench_stream``: the threaded pipeline flat out on the demo source (FER+ Test faces in
  640x480 frames, each face held for ``hold`` frames so the tracker runs as on a camera):
  per-stage latency p50/p99, capture-to-result latency, sustained fps, CPU time per frame
  and peak resident memory. ``bench_model``: the ONNX session alone at batch 1.
- ``e2e_accuracy``: FER+ Test faces upscaled into 640x480 camera-like frames (random size,
  position, background, brightness, contrast and noise; seeded) go through locate -> align ->
  occlude -> classify, beside the same model on the dataset crops. A third figure, the
  "placed" crop (the exact inverse of the placement, no face finder), separates what the
  photometric changes cost from what the alignment costs.
- ``soak``: the pipeline for a given time at full rate: RSS at start/end/max, the longest
  stall between two results, dropped and failed frames.

No timing here is asserted anywhere: the machine decides the figures.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import random
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.backgrounds import FRAME_SIZE, KINDS, background
from vrfer.core.paths import ASSETS_DIR

STAGES = ("locate", "preprocess", "model", "smooth", "total")


# ---------------------------------------------------------------- process figures


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of a list of milliseconds (all 0 for an empty list), plus n."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0, "n": 0}
    return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
            "mean": float(v.mean()), "max": float(v.max()), "n": int(v.size)}


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux /proc; peak elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (mediapipe's included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def shipped_models(folder: Path = ASSETS_DIR / "models") -> list[Path]:
    return sorted(folder.glob("*.onnx"))


def machine() -> dict[str, object]:
    """CPU model and count, for the record beside the figures."""
    name = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": name, "cores": os.cpu_count(), "load_avg_1m": round(load[0], 2)}


# ---------------------------------------------------------------- stream latency


def _demo_options(source: str, hold: int, seed: int, loop: bool) -> dict[str, object] | None:
    return {"hold": hold, "seed": seed, "loop": loop} if source.strip().lower() == "demo" else None


def bench_stream(model: str | Path, *, frames: int = 600, warmup: int = 20, threads: int = 1,
                 hold: int = 30, tracking: bool = True, seed: int = 0, source: str = "demo") -> dict:
    """Run the pipeline flat out (``realtime=False``) and time it after ``warmup`` results.

    Stage figures (locate...smooth) come from frames with a face; ``total`` (capture to
    result) and the rate cover every frame, found or not.
    """
    from vrfer.core.face import FaceConfig
    from vrfer.core.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig(source=source, realtime=False, model=model, face=FaceConfig(tracking=tracking),
                         threads=threads, max_frames=warmup + frames,
                         source_options=_demo_options(source, hold, seed, loop=True))
    timings: dict[str, list[float]] = {s: [] for s in STAGES}
    marks: dict[str, float] = {}
    counts = {"results": 0, "faces": 0}

    def collect(state) -> None:
        if state.frame_index < 0:  # a status-only state
            return
        counts["results"] += 1
        if counts["results"] == warmup:  # CPU and wall clock from the end of the warm-up
            marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
            return
        if counts["results"] < warmup:
            return
        marks["t1"], marks["cpu1"] = time.perf_counter(), cpu_seconds()
        counts["faces"] += state.face
        for stage, ms in state.timings_ms.items():
            if stage in timings and (state.face or stage in ("locate", "total")):
                timings[stage].append(ms)

    pipeline = Pipeline(cfg)
    pipeline.subscribe(collect)
    if warmup == 0:
        marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
    with pipeline:
        pipeline.wait()
    stats = pipeline.stats
    # From the warm-up's last result (or the start) to the last result: ``measured`` frames.
    measured = max(0, counts["results"] - warmup)
    wall = marks.get("t1", 0.0) - marks.get("t0", 0.0)
    cpu = marks.get("cpu1", 0.0) - marks.get("cpu0", 0.0)
    fps = measured / wall if measured and wall > 0 else 0.0
    return {
        "source": pipeline.config.source if source != "demo" else _source_name(),
        "model": str(model), "threads": threads, "tracking": tracking, "hold": hold,
        "frames": measured, "faces": counts["faces"], "warmup": warmup,
        "stages_ms": {s: percentiles(v) for s, v in timings.items()},
        "fps": fps,
        "cpu_ms_per_frame": 1e3 * cpu / measured if measured else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "dropped": stats.dropped, "errors": stats.errors,
    }


def _source_name() -> str:
    from vrfer.core.paths import ferplus_available

    return "demo: FER+ Test faces" if ferplus_available() else "demo: SYNTHETIC (no FER+ data)"


def bench_preprocess(runs: int = 2000, seed: int = 0) -> dict:
    """``core.preprocess`` per version on the same frames, interleaved in one run (a ratio that
    machine load cannot fake): a 640x480 frame, a 240 px face, the lower-half 24x48 input."""
    from vrfer.core.preprocess import SUPPORTED_VERSIONS, PreprocessSpec, preprocess

    rng = np.random.default_rng(seed)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    s = 48 / 240  # canonical px per frame px
    transform = np.array([[s, 0.0, -s * 200], [0.0, s, -s * 120]])
    specs = {v: PreprocessSpec(version=v) for v in SUPPORTED_VERSIONS}
    times: dict[int, list[float]] = {v: [] for v in specs}
    for i in range(runs + 50):
        for v, spec in (specs.items() if i % 2 else reversed(specs.items())):
            t0 = time.perf_counter()
            preprocess(frame, transform, spec)
            if i >= 50:
                times[v].append((time.perf_counter() - t0) * 1e3)
    out = {f"v{v}": percentiles(t) for v, t in times.items()}
    out["ratio_p50_v2_v1"] = out["v2"]["p50"] / out["v1"]["p50"]
    return out


def bench_model(path: str | Path, *, threads: int = 1, runs: int = 500, warmup: int = 50) -> dict:
    """Latency of one ONNX file at batch 1: the session alone (``run``) and, for expression
    models, ``ExpressionModel.predict`` with its softmax. Other shipped networks (the headset
    locator) get the session figure only."""
    import onnxruntime as ort

    from vrfer.core.errors import ModelError
    from vrfer.core.model import ExpressionModel
    from vrfer.core.onnx_check import check_model_file

    path = Path(path)
    try:
        model: ExpressionModel | None = ExpressionModel(path, threads=threads)
        session, name = model.session, model.info.name
    except ModelError:
        check_model_file(path)  # timing needs no metadata contract, but the file is vetted all the same
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 4
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception:  # not even an ONNX file: let ExpressionModel say so in one line
            ExpressionModel(path)
            raise
        model, name = None, path.stem
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    outputs = [session.get_outputs()[0].name]
    run_ms, predict_ms = [], []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        session.run(outputs, {inp.name: x})
        t1 = time.perf_counter()
        if model is not None:
            model.predict(x)
        t2 = time.perf_counter()
        if i >= warmup:
            run_ms.append((t1 - t0) * 1e3)
            predict_ms.append((t2 - t1) * 1e3)
    return {"model": str(path), "name": name, "threads": threads, "input": shape[1:],
            "expression_model": model is not None, "run_ms": percentiles(run_ms),
            "predict_ms": percentiles(predict_ms) if model is not None else None}


def compare_models(path: str | Path, reference: str | Path, *, threads: int = 1, runs: int = 500,
                   warmup: int = 50) -> dict:
    """Model-only latency of ``path`` against ``reference``, interleaved call by call in one run so
    that the machine's speed (which varies about 2x between sessions) cancels out of the ratio."""
    from vrfer.core.model import ExpressionModel

    models = [ExpressionModel(Path(p), threads=threads) for p in (path, reference)]
    inputs = [np.random.default_rng(0).uniform(-1, 1, (1, *m.spec.input_shape)).astype(np.float32) for m in models]
    times: list[list[float]] = [[], []]
    for i in range(warmup + runs):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate who goes first
            t0 = time.perf_counter()
            models[k].predict(inputs[k])
            if i >= warmup:
                times[k].append((time.perf_counter() - t0) * 1e3)
    a, b = percentiles(times[0]), percentiles(times[1])
    return {"model": str(path), "reference": str(reference), "threads": threads, "runs": runs,
            "predict_ms": a, "reference_predict_ms": b,
            "ratio": {"p50": a["p50"] / b["p50"], "p99": a["p99"] / b["p99"]}, "load": os.getloadavg()[0]}


# ---------------------------------------------------------------- end-to-end accuracy


@dataclass(frozen=True)
class CameraLikeFrame:
    """A FER+ face placed in a frame. ``placed`` maps frame pixels back onto the 48x48 crop."""

    image: np.ndarray  # 480 x 640 x 3 BGR uint8
    face: np.ndarray  # the original 48x48 grayscale crop
    placed: np.ndarray  # 2x3 affine, frame -> canonical, the exact inverse of the placement
    truth: str
    file: str
    params: dict[str, float]  # size, x, y, background, contrast, brightness, noise: for analysis


@dataclass(frozen=True)
class CameraLikeSpec:
    """How the camera-like frames vary. Sizes are the face crop's side in frame pixels."""

    face_size: tuple[int, int] = (120, 300)
    contrast: tuple[float, float] = (0.6, 1.3)
    brightness: tuple[float, float] = (-40.0, 40.0)
    noise_sigma: tuple[float, float] = (1.0, 5.0)


def camera_like_frames(faces: Sequence[tuple[str, str]], folder: Path, *, seed: int = 0,
                       spec: CameraLikeSpec = CameraLikeSpec()) -> Iterator[CameraLikeFrame]:
    """One frame per (file, label) in ``faces``, read from ``folder``; the same frames for a seed."""
    rng = np.random.default_rng(seed)
    w, h = FRAME_SIZE
    for file, truth in faces:
        face = cv2.imread(str(folder / file), cv2.IMREAD_GRAYSCALE)
        if face is None:
            continue
        if face.shape != (48, 48):
            face = cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA)
        size = int(rng.integers(spec.face_size[0], spec.face_size[1] + 1))
        x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        kind = int(rng.integers(3))
        frame = background(rng, KINDS[kind], FRAME_SIZE).astype(np.float32)
        big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        frame[y:y + size, x:x + size] = big[:, :, None]
        contrast = rng.uniform(*spec.contrast)
        brightness = rng.uniform(*spec.brightness)
        sigma = rng.uniform(*spec.noise_sigma)
        frame = (frame - 128.0) * contrast + 128.0 + brightness + rng.normal(0.0, sigma, frame.shape)
        image = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        # Pixel centres as cv2.resize: frame u -> canonical (u - x + 0.5) * k - 0.5, k = 48 / size.
        k = 48.0 / size
        placed = np.array([[k, 0.0, (0.5 - x) * k - 0.5], [0.0, k, (0.5 - y) * k - 0.5]])
        yield CameraLikeFrame(image, face, placed, truth, file,
                              {"size": size, "x": x, "y": y, "background": kind, "contrast": contrast,
                               "brightness": brightness, "noise": sigma})


def e2e_accuracy(model_path: str | Path, *, n: int | None = 1000, seed: int = 0, root: Path | None = None,
                 spec: CameraLikeSpec = CameraLikeSpec(), fallbacks: bool = True, max_yaw: float | None = None,
                 locator: Path | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy of one model on the same FER+ Test faces three ways (see the module docstring).

    ``n`` faces are drawn (seeded) from the Test faces that have a majority label; None
    takes them all. The locator runs in static mode: every frame is a different face.
    ``fallbacks=False`` leaves out the runtime's fallbacks (headset locator, ROI): the mesh alone.
    ``max_yaw`` replaces the runtime's head-turn limit (``FaceConfig.max_yaw``) for this run.
    ``locator``: the headset locator model (default: the shipped one).
    """
    from vrfer.core.errors import DatasetError
    from vrfer.core.face import DEFAULT_LOCATOR, FaceConfig, FaceLocator, default_fallbacks
    from vrfer.core.ferplus import majority_faces
    from vrfer.core.model import ExpressionModel
    from vrfer.core.paths import ferplus_dir
    from vrfer.core.preprocess import preprocess
    from vrfer.core.types import Frame

    root = root or ferplus_dir()
    if not (root / "FER2013Test" / "label.csv").is_file():
        raise DatasetError(f"the end-to-end benchmark needs FER+ Test faces: {root / 'FER2013Test' / 'label.csv'} "
                           "is missing (set VRFER_FERPLUS)")
    faces = majority_faces(root)
    if n is not None and n < len(faces):
        faces = random.Random(seed).sample(faces, n)
    model = ExpressionModel(model_path)
    classes = model.classes
    rows: list[dict] = []
    t_start = time.perf_counter()
    face_cfg = FaceConfig(tracking=False)  # as the pipeline runs on unrelated images, fallbacks included
    if max_yaw is not None:
        face_cfg = dataclasses.replace(face_cfg, max_yaw=max_yaw)
    with FaceLocator(face_cfg, default_fallbacks(face_cfg, locator) if fallbacks else ()) as finder:
        for i, cf in enumerate(camera_like_frames(faces, root / "FER2013Test", seed=seed, spec=spec)):
            crop_p = model.predict(preprocess(cf.face, None, model.spec)[None])[0][0]
            placed_p = model.predict(preprocess(cf.image, cf.placed, model.spec)[None])[0][0]
            t_locate = time.perf_counter()
            geometry = finder.process(Frame(cf.image, i, t_locate))
            locate_ms = (time.perf_counter() - t_locate) * 1e3
            e2e = None
            offset = None
            if geometry is not None:
                e2e = classes[int(np.argmax(model.predict(
                    preprocess(cf.image, geometry.transform, model.spec)[None])[0][0]))]
                offset = _alignment_offset(geometry.transform, cf.placed)
            rows.append({"truth": cf.truth, "crop": classes[int(np.argmax(crop_p))],
                         "placed": classes[int(np.argmax(placed_p))], "e2e": e2e,
                         "reason": None if geometry is not None else finder.last_reason, "offset": offset,
                         "size": cf.params["size"], "path": geometry.path if geometry is not None else None,
                         "yaw": None if geometry is None else float(geometry.yaw), "locate_ms": locate_ms})
            if progress is not None:
                progress(i + 1, len(faces))
    return summarise_e2e(rows, model=str(model_path), seed=seed, fallbacks=fallbacks,
                         locator=str(locator or DEFAULT_LOCATOR) if fallbacks else None,
                         max_yaw=face_cfg.max_yaw, seconds=time.perf_counter() - t_start)


def _alignment_offset(found: np.ndarray, placed: np.ndarray) -> dict[str, float]:
    """How the found alignment differs from the placement, in canonical 48 px units.

    Both map frame -> canonical; ``found @ placed^-1`` maps the original crop onto what the
    model sees. Its scale, rotation and the shift of the crop's centre describe the error.
    """
    inv = cv2.invertAffineTransform(placed)
    m = np.vstack([found, [0, 0, 1]]) @ np.vstack([inv, [0, 0, 1]])
    scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    centre = m[:2, :2] @ np.array([23.5, 23.5]) + m[:2, 2]
    return {"scale": scale, "angle": angle, "dx": float(centre[0] - 23.5), "dy": float(centre[1] - 23.5)}


def summarise_e2e(rows: Sequence[dict], **extra: object) -> dict:
    """Accuracies (in %) and the gaps from per-face rows of truth/crop/placed/e2e predictions."""
    n = len(rows)
    found = [r for r in rows if r["e2e"] is not None]

    def acc(subset: Sequence[dict], key: str) -> float:
        return 100.0 * sum(r[key] == r["truth"] for r in subset) / len(subset) if subset else 0.0

    reasons: dict[str, int] = {}
    for r in rows:
        if r["e2e"] is None:
            reason = str(r["reason"]).split(" (")[0]  # "head turned too far (yaw 52°)" -> one kind
            reasons[reason] = reasons.get(reason, 0) + 1
    offsets = [r["offset"] for r in found if r.get("offset")]
    offset_stats = {k: {"median": float(np.median([o[k] for o in offsets])),
                        "p90_abs": float(np.percentile([abs(o[k] - (1.0 if k == "scale" else 0.0))
                                                        for o in offsets], 90))}
                    for k in ("scale", "angle", "dx", "dy")} if offsets else {}
    by_size: dict[str, str] = {}
    for lo in range(0, 400, 40):  # detection rate per band of face size (the crop's side, px)
        band = [r for r in rows if lo <= r.get("size", -1) < lo + 40]
        if band:
            by_size[f"{lo}-{lo + 39}"] = f"{sum(r['e2e'] is not None for r in band)}/{len(band)}"
    by_yaw = {}  # is the head-turn limit worth its refusals? (run with a wider max_yaw to see)
    for lo, hi in ((0, 15), (15, 30), (30, 45), (45, 60), (60, 91)):
        band = [r for r in found if r.get("yaw") is not None and lo <= abs(r["yaw"]) < hi]
        if band:
            by_yaw[f"{lo}-{min(hi, 90)}"] = {"frames": len(band), "crop": acc(band, "crop"), "e2e": acc(band, "e2e")}
    out = {
        **extra,
        "frames": n, "found": len(found), "found_pct": 100.0 * len(found) / n if n else 0.0,
        "not_found": reasons, "found_by_face_size": by_size,
        "found_by_path": {p: sum(str(r.get("path")) == p for r in found)
                          for p in sorted({str(r.get("path")) for r in found})},
        # Per finder: the mesh's faces and a fallback's (e.g. the headset locator's) differ in
        # difficulty, so each gets its own crop/placed/e2e accuracies.
        "by_path": {p: {"frames": len(sub), "crop": acc(sub, "crop"), "placed": acc(sub, "placed"),
                        "e2e": acc(sub, "e2e")}
                    for p in sorted({str(r.get("path")) for r in found})
                    for sub in [[r for r in found if str(r.get("path")) == p]]},
        "accuracy": {
            "crop_all": acc(rows, "crop"),  # the model on the dataset crops, every face
            "placed_all": acc(rows, "placed"),  # camera-like frame, exact placement, every face
            "e2e_all": 100.0 * sum(r["e2e"] == r["truth"] for r in found) / n if n else 0.0,  # no face = wrong
            "crop_found": acc(found, "crop"),  # the same comparisons on the faces the locator found
            "placed_found": acc(found, "placed"),
            "e2e_found": acc(found, "e2e"),
        },
        "alignment_offset": offset_stats,
        "found_by_yaw": by_yaw,
        "locate_ms": percentiles([r["locate_ms"] for r in rows if "locate_ms" in r]),
    }
    a = out["accuracy"]
    out["gap"] = {
        "all_frames": a["crop_all"] - a["e2e_all"],  # what a user loses, not-found faces included
        "found_faces": a["crop_found"] - a["e2e_found"],  # what the alignment costs
        "photometric": a["crop_found"] - a["placed_found"],  # resampling, light and noise alone
        "alignment": a["placed_found"] - a["e2e_found"],
    }
    return out


# ---------------------------------------------------------------- soak


def soak(model: str | Path, seconds: float, *, source: str = "demo", threads: int = 1, hold: int = 30,
         seed: int = 0, tracking: bool = True, sample_s: float = 1.0, warmup_s: float = 5.0,
         progress: Callable[[float, dict], None] | None = None) -> dict:
    """Run the pipeline for ``seconds`` at full rate; memory, stalls and drops.

    RSS growth is measured from the end of ``warmup_s`` (imports and mediapipe's first
    allocations are not a leak). A stall is the longest time between two results.
    """
    from vrfer.core.face import FaceConfig
    from vrfer.core.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig(source=source, realtime=False, model=model, face=FaceConfig(tracking=tracking),
                         threads=threads, source_options=_demo_options(source, hold, seed, loop=True))
    lock = threading.Lock()
    rec = {"results": 0, "faces": 0, "last": None, "max_gap": 0.0, "max_gap_at": 0.0, "statuses": 0,
           "stalls_50ms": 0, "stalls_100ms": 0, "t_first": None}
    window = max(1.0, min(60.0, seconds / 10))  # first and last minute (or tenth) of the run
    # Bounded records: a soak that kept every frame's figure would itself look like a leak.
    first: list[float] = []
    last: collections.deque[tuple[float, float]] = collections.deque()

    def collect(state) -> None:
        now = time.perf_counter()
        with lock:
            if state.frame_index < 0:
                rec["statuses"] += 1
                return
            if rec["last"] is not None:
                gap = now - rec["last"]
                rec["stalls_50ms"] += gap > 0.05
                rec["stalls_100ms"] += gap > 0.1
                if gap > rec["max_gap"]:
                    rec["max_gap"], rec["max_gap_at"] = gap, now - t_start
            rec["last"] = now
            rec["results"] += 1
            rec["faces"] += state.face
            if rec["t_first"] is None:
                rec["t_first"] = now
            t, total = now - rec["t_first"], state.timings_ms.get("total", 0.0)  # from the first result
            if t <= window:
                first.append(total)
            last.append((t, total))
            while last and last[0][0] < t - window:
                last.popleft()

    rss_before = rss_mb()
    pipeline = Pipeline(cfg)
    pipeline.subscribe(collect)
    samples: list[tuple[float, float]] = []
    t_start = time.perf_counter()
    cpu0 = cpu_seconds()
    with pipeline:
        while True:
            elapsed = time.perf_counter() - t_start
            samples.append((elapsed, rss_mb()))
            if elapsed >= seconds or not pipeline.running:
                break
            if progress is not None:
                with lock:
                    progress(elapsed, dict(rec))
            time.sleep(min(sample_s, max(0.0, seconds - elapsed)))
        stats = pipeline.stats
    wall = time.perf_counter() - t_start
    cpu = cpu_seconds() - cpu0
    after = [r for t, r in samples if t >= warmup_s] or [samples[-1][1]]
    step = max(1, len(samples) // 10)
    picked = samples[::step] if (len(samples) - 1) % step == 0 else samples[::step] + samples[-1:]
    curve = [(round(t, 1), round(r, 1)) for t, r in picked]
    return {
        "source": _source_name() if source == "demo" else source, "model": str(model),
        "seconds": wall, "results": rec["results"], "faces": rec["faces"],
        "fps": rec["results"] / wall if wall > 0 else 0.0,
        "cpu_ms_per_frame": 1e3 * cpu / max(rec["results"], 1),
        "rss_mb": {"before_start": rss_before, "start": after[0], "end": samples[-1][1],
                   "max": max(r for _, r in samples), "growth": samples[-1][1] - after[0],
                   "warmup_s": warmup_s, "curve": curve},
        "peak_rss_mb": peak_rss_mb(),
        "longest_stall_ms": 1e3 * rec["max_gap"], "longest_stall_at_s": rec["max_gap_at"],
        "stalls_over_50ms": rec["stalls_50ms"], "stalls_over_100ms": rec["stalls_100ms"],
        "captured": stats.captured, "processed": stats.processed, "dropped": stats.dropped,
        "errors": stats.errors, "status_messages": rec["statuses"], "last_error": stats.last_error,
        "total_ms_first": percentiles(first), "total_ms_last": percentiles([ms for _, ms in last]),
        "window_s": window,
        "ended_early": wall < seconds - 1.0,
    }
