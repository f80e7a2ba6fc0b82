"""The false-face benchmark: the runtime's face finder on the face-free frame family
(``core.facefree``, benchmark side), ``vrfer bench --e2e``'s ``face_free`` section."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from vrfer.bench.runtime import percentiles
from vrfer.core.face import DEFAULT_LOCATOR, FaceConfig, FaceLocator, default_fallbacks
from vrfer.core.facefree import KINDS, face_free_frames
from vrfer.core.types import Frame


def false_face_bench(n_per_kind: int = 100, *, seed: int = 0, fallbacks: bool = True, max_yaw: float | None = None,
                     locator: Path | None = None, root: Path | None = None, cfg=None) -> dict:
    """The runtime's face finder (static mode, as ``vrfer.bench.runtime.e2e_accuracy`` runs it) on the
    benchmark family: how often it reports a face where there is none, per kind, by path, and
    what ``FaceLocator.process`` costs on these frames (p50/p99 ms, per kind and overall)."""
    cfg = cfg if cfg is not None else FaceConfig(tracking=False)  # ``cfg``: another finder setting
    if max_yaw is not None:
        cfg = dataclasses.replace(cfg, max_yaw=max_yaw)
    per_kind: dict[str, dict] = {k: {"frames": 0, "false_faces": 0, "ms": []} for k in KINDS}
    paths: dict[str, int] = {}
    reasons: dict[str, int] = {}
    with FaceLocator(cfg, default_fallbacks(cfg, locator) if fallbacks else ()) as finder:
        for i, f in enumerate(face_free_frames(n_per_kind, split="bench", seed=seed, root=root)):
            t0 = time.perf_counter()
            g = finder.process(Frame(f.image, i, t0))
            rec = per_kind[f.kind]
            rec["ms"].append((time.perf_counter() - t0) * 1e3)
            rec["frames"] += 1
            if g is not None:
                rec["false_faces"] += 1
                paths[g.path] = paths.get(g.path, 0) + 1
            else:
                reason = str(finder.last_reason).split(" (")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
    frames = sum(r["frames"] for r in per_kind.values())
    false = sum(r["false_faces"] for r in per_kind.values())
    return {
        "frames": frames, "false_faces": false, "false_face_pct": 100.0 * false / frames if frames else 0.0,
        "false_by_path": paths, "not_found": reasons, "seed": seed, "fallbacks": fallbacks,
        "locator": str(locator or DEFAULT_LOCATOR) if fallbacks else None,
        "by_kind": {k: {"frames": r["frames"], "false_faces": r["false_faces"],
                        "false_face_pct": 100.0 * r["false_faces"] / r["frames"] if r["frames"] else 0.0,
                        "locate_ms": percentiles(r["ms"])} for k, r in per_kind.items() if r["frames"]},
        "locate_ms": percentiles([ms for r in per_kind.values() for ms in r["ms"]]),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
