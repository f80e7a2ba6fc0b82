"""The paper's sequence for one architecture, from one TOML file:
teacher (full faces) -> student baseline (occluded) -> classic KD -> triplet KD -> combined.

Each stage is an ordinary ``training.train`` run in ``out/<stage>/`` (so a killed reproduce
resumes where it stopped), exported to ``out/<stage>.onnx`` and scored by
``training.evaluate`` -- the same path as ``vrfer eval`` -- on Test and Valid. Writes
``out/results.json``, ``out/results.md`` (rows for docs/results.md, with McNemar p-values
of each distilled student against the baseline) and ``out/confusion_<stage>.png``.

Config layout::

    column = "fast student"        # the results-table column
    out = "runs/paper_fast"
    teacher_checkpoint = ""        # reuse a trained teacher instead of training one
    stages = ["teacher", "student", "classic", "triplet", "combined"]
    [common]   # TrainConfig keys for every stage
    [teacher]  # per-stage TrainConfig overrides (nested [x.kd] / [x.augment] tables merge)
    [student]
    [classic]
    [triplet]
    [combine]  # CombineConfig keys
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrfer.core.config import from_dict, read_toml
from vrfer.core.errors import ConfigError
from vrfer.core.paths import ferplus_dir
from vrfer.training.combine import CombineConfig
from vrfer.training.config import TrainConfig

STAGES = ("teacher", "student", "classic", "triplet", "combined")
ROW_TITLES = {"teacher": "Teacher on full faces", "student": "Student on lower-half faces",
              "classic": "+ classic KD", "triplet": "+ triplet KD", "combined": "Combined (classic + triplet)"}


@dataclass
class ReproduceConfig:
    column: str
    out: Path
    stages: tuple[str, ...]
    teacher_checkpoint: str
    train: dict[str, TrainConfig] = field(default_factory=dict)
    combine: CombineConfig = field(default_factory=CombineConfig)
    source: str = ""

    @classmethod
    def from_toml(cls, path: str | Path, out: str | None = None, epochs: int | None = None) -> "ReproduceConfig":
        path = Path(path)
        raw = read_toml(path)
        known = {"column", "out", "stages", "teacher_checkpoint", "common", "combine", *STAGES[:-1]}
        for key in raw:
            if key not in known:
                raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        stages = tuple(raw.get("stages", STAGES))
        bad = [s for s in stages if s not in STAGES]
        if bad:
            raise ConfigError(f"{path}: unknown stage {bad[0]!r} (stages: {', '.join(STAGES)})")
        base = Path(out or raw.get("out", f"runs/{path.stem}"))
        common = raw.get("common", {})
        train = {}
        for stage in STAGES[:-1]:
            merged = _merge(common, raw.get(stage, {}))
            merged.setdefault("name", stage)
            merged["out"] = str(base / stage)
            if epochs is not None:
                merged["epochs"] = epochs
            train[stage] = from_dict(TrainConfig, merged, str(path), f"{stage}.")
        combine = from_dict(CombineConfig, raw.get("combine", {}), str(path), "combine.")
        return cls(str(raw.get("column", path.stem)), base, stages, str(raw.get("teacher_checkpoint", "")),
                   train, combine, str(path))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def reproduce(rc: ReproduceConfig, progress: bool = True) -> dict[str, Any]:
    from vrfer.training.combine import train_combined
    from vrfer.training.evaluate import confusion_png, evaluate_model
    from vrfer.training.export import export_onnx, load_for_export
    from vrfer.training.stats import mcnemar
    from vrfer.training.train import train

    rc.out.mkdir(parents=True, exist_ok=True)
    teacher_ckpt = rc.teacher_checkpoint or str(rc.out / "teacher" / "best.pt")
    checkpoints: dict[str, Path] = {}
    for stage in ("teacher", "student", "classic", "triplet"):
        cfg = rc.train[stage]
        if stage in ("classic", "triplet"):
            cfg.kd.teacher = teacher_ckpt
            if cfg.kd.method == "none":
                cfg.kd.method = stage
        if stage == "teacher" and rc.teacher_checkpoint:
            checkpoints[stage] = Path(rc.teacher_checkpoint)
            continue
        if stage in rc.stages:
            train(cfg, resume=True, progress=progress)
            checkpoints[stage] = Path(cfg.out) / "best.pt"
    if "combined" in rc.stages:
        train_combined(checkpoints["classic"], checkpoints["triplet"], rc.out / "combined", rc.combine,
                       rc.train["student"])
        checkpoints["combined"] = rc.out / "combined" / "combined.pt"

    data_cfg = rc.train["student"]
    root = Path(data_cfg.data) if data_cfg.data else ferplus_dir()
    from vrfer.training.datasets import load_dataset

    sets = {s: load_dataset(data_cfg.dataset, root, s, "majority") for s in ("train", "valid", "test")}
    rows: dict[str, Any] = {}
    evals = {}
    for stage, ckpt in checkpoints.items():
        net, spec, name = load_for_export(ckpt)
        onnx_path = export_onnx(net, spec, rc.out / f"{stage}.onnx", name=f"{rc.column}-{stage}")
        test = evaluate_model(onnx_path, root, "test", data_cfg.dataset, data=sets["test"], train=sets["train"])
        valid = evaluate_model(onnx_path, root, "valid", data_cfg.dataset, data=sets["valid"], train=sets["train"])
        evals[stage] = test
        confusion_png(test.confusion, test.classes, rc.out / f"confusion_{stage}.png", f"{stage} (Test): {rc.column}")
        metrics = json.loads((ckpt.parent / "metrics.json").read_text()) if (ckpt.parent / "metrics.json").is_file() else {}
        rows[stage] = {"row": ROW_TITLES[stage], "checkpoint": str(ckpt), "onnx": str(onnx_path),
                       "test": test.accuracy, "n_test": test.n, "test_dedup": test.accuracy_dedup,
                       "n_test_dedup": test.n_dedup, "valid": valid.accuracy, "n_valid": valid.n,
                       "per_class": test.per_class, "epochs": metrics.get("epochs"),
                       "spec": test.spec}
    if "student" in evals:
        for stage in ("classic", "triplet", "combined"):
            if stage in evals:
                m = mcnemar(evals["student"].correct, evals[stage].correct)
                rows[stage]["mcnemar_vs_student"] = {"b_student_only": m.b, "c_distilled_only": m.c,
                                                     "p_value": m.p_value}
    result = {"column": rc.column, "config": rc.source, "rows": rows}
    (rc.out / "results.json").write_text(json.dumps(result, indent=2))
    (rc.out / "results.md").write_text(results_markdown(result))
    return result


def results_markdown(result: dict[str, Any]) -> str:
    """The rows of one column, in the shape docs/results.md uses."""
    lines = [f"### {result['column']} (`vrfer reproduce {result['config']}`)", "",
             "| row | epochs | Test | Test-dedup | Valid | McNemar vs student (b/c, p) |",
             "|---|---|---|---|---|---|"]
    for stage in STAGES:
        r = result["rows"].get(stage)
        if r is None:
            continue
        mc = r.get("mcnemar_vs_student")
        mc_s = f"{mc['b_student_only']}/{mc['c_distilled_only']}, p={mc['p_value']:.3g}" if mc else "-"
        dedup = f"{100 * r['test_dedup']:.2f}%" if r["test_dedup"] is not None else "-"
        lines.append(f"| {r['row']} | {r['epochs'] or '-'} | {100 * r['test']:.2f}% (n={r['n_test']}) | {dedup} "
                     f"| {100 * r['valid']:.2f}% | {mc_s} |")
    lines += ["", "Per-class Test accuracy:", "",
              "| row | " + " | ".join(next(iter(result["rows"].values()))["per_class"]) + " |",
              "|---|" + "---|" * len(next(iter(result["rows"].values()))["per_class"])]
    for stage in STAGES:
        r = result["rows"].get(stage)
        if r is None:
            continue
        cells = [f"{100 * v['accuracy']:.1f}" if v["accuracy"] is not None else "-" for v in r["per_class"].values()]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
