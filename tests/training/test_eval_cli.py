"""``vrfer eval`` (torch-free, through ExpressionModel) and ``vrfer reproduce`` end to end on a
tiny FER+ folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

EVAL = ("import sys; from vrfer.cli.main import main; rc = main(sys.argv[1:]); "
        "print('TORCH', 'torch' in sys.modules, file=sys.stderr); sys.exit(rc)")


def test_eval_json_reports_accuracy_dedup_per_class_and_confusion_without_torch(
        tiny_ferplus: Path, tiny_model: Path, tmp_path: Path) -> None:
    png = tmp_path / "confusion.png"
    proc = subprocess.run([sys.executable, "-c", EVAL, "eval", "--model", str(tiny_model), "--data", str(tiny_ferplus),
                           "--split", "test", "--json", "--confusion", str(png)],
                          cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stderr
    out = json.loads(proc.stdout)
    assert {"accuracy", "n", "accuracy_dedup", "n_dedup", "per_class", "confusion"} <= set(out)
    assert out["n"] == 32 and out["n_dedup"] == 31  # the fixture's one Test image copied from Train
    conf = np.array(out["confusion"])
    assert conf.shape == (8, 8) and conf.sum() == 32
    assert out["accuracy"] == np.trace(conf) / 32
    assert [out["per_class"][c]["n"] for c in ("neutral", "happiness", "surprise", "sadness")] == [8, 8, 8, 8]
    assert out["spec"] == {"size": 48, "occlusion": "vr", "region": "lower", "version": 1}
    assert cv2.imread(str(png)) is not None


def test_eval_missing_model_is_one_error_line(tiny_ferplus: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "vrfer.cli.main", "eval", "--model", str(tmp_path / "none.onnx"),
                           "--data", str(tiny_ferplus)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {tmp_path / 'none.onnx'}: model file not found\n"


REPRO_TOML = """
column = "tiny"
out = "{out}"
[common]
model = "tinyres_s"
data = "{data}"
epochs = 1
batch_size = 16
lr = 0.05
warmup_epochs = 0.5
ema_decay = 0.9
num_threads = 1
[teacher]
region = "full"
occlusion = "none"
[classic.kd]
temperature = 3.0
alpha = 0.5
[triplet.kd]
margin = 0.3
[combine]
epochs = 3
"""


def test_reproduce_runs_the_paper_sequence_and_writes_rows(tiny_ferplus: Path, tmp_path: Path) -> None:
    from vrfer.cli.main import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(REPRO_TOML.format(out=tmp_path / "repro", data=tiny_ferplus))
    assert main(["reproduce", str(cfg), "--no-progress"]) == 0
    result = json.loads((tmp_path / "repro" / "results.json").read_text())
    rows = result["rows"]
    assert list(rows) == ["teacher", "student", "classic", "triplet", "combined"]
    assert rows["teacher"]["spec"]["region"] == "full" and rows["student"]["spec"]["region"] == "lower"
    for stage in ("classic", "triplet", "combined"):
        mc = rows[stage]["mcnemar_vs_student"]
        assert 0.0 <= mc["p_value"] <= 1.0
    for stage, r in rows.items():
        assert r["n_test"] == 32 and r["n_test_dedup"] == 31
        assert Path(r["onnx"]).is_file() and (tmp_path / "repro" / f"confusion_{stage}.png").is_file()
    kd = json.loads((tmp_path / "repro" / "classic" / "config.json").read_text())["kd"]
    assert kd["method"] == "classic" and kd["teacher"].endswith("teacher/best.pt") and kd["alpha"] == 0.5
    md = (tmp_path / "repro" / "results.md").read_text()
    assert "| + triplet KD |" in md and "Combined (classic + triplet)" in md


def test_train_and_export_commands_write_a_loadable_model(tiny_ferplus: Path, tmp_path: Path, capsys) -> None:
    from vrfer.cli.main import main
    from vrfer.core.model import ExpressionModel

    cfg = tmp_path / "s.toml"
    cfg.write_text(f'model = "tinyres_s"\ndata = "{tiny_ferplus}"\nbatch_size = 16\nnum_threads = 1\n'
                   f'out = "{tmp_path / "ignored"}"\n')
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs"] == 1
    assert not (tmp_path / "ignored").exists()
    assert main(["export", str(tmp_path / "run" / "best.pt"), "-o", str(tmp_path / "m.onnx"), "--name", "mine"]) == 0
    model = ExpressionModel(tmp_path / "m.onnx")
    assert model.info.name == "mine" and model.spec.region == "lower"


def test_reproduce_config_errors_name_file_and_key(tmp_path: Path, capsys) -> None:
    from vrfer.cli.main import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[student]\nepochz = 3\n')
    assert main(["reproduce", str(cfg)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {cfg}: unknown key 'student.epochz' (known: name, model,")
    cfg.write_text('stages = ["teacher", "finetune"]\n')
    assert main(["reproduce", str(cfg)]) == 2
    assert capsys.readouterr().err == (f"error: {cfg}: unknown stage 'finetune' "
                                       "(stages: teacher, student, classic, triplet, combined)\n")


def test_eval_against_gives_mcnemar_on_the_same_images(tiny_ferplus: Path, make_onnx) -> None:
    a = make_onnx("a.onnx", seed=1)
    b = make_onnx("b.onnx", seed=2)
    proc = subprocess.run([sys.executable, "-c", EVAL, "eval", "--model", str(a), "--against", str(b),
                           "--data", str(tiny_ferplus), "--split", "test", "--json"],
                          cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    vs = out["against"]
    # b + c are the images exactly one of the two gets right: the accuracies differ by (c - b) / n.
    assert out["accuracy"] - vs["accuracy"] == pytest.approx((vs["c_model_only"] - vs["b_against_only"]) / out["n"])
    assert 0.0 < vs["p_value"] <= 1.0
    same = subprocess.run([sys.executable, "-c", EVAL, "eval", "--model", str(a), "--against", str(a),
                           "--data", str(tiny_ferplus), "--split", "test"],
                          cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert "McNemar: 0 images only it gets right, 0 only" in same.stdout and "p = 1" in same.stdout


def test_eval_webcam_view_is_seeded_torch_free_and_finds_duplicates_on_the_faces(tiny_ferplus: Path,
                                                                                  tiny_model: Path) -> None:
    """``--webcam SEED``: every face through the broadened family's webcam (the same view for any
    model given the seed, another view for another seed); Train duplicates are still found on the
    faces themselves. The shipped student's answers show which images it was given."""
    model = REPO / "assets" / "models" / "student.onnx"
    runs = []
    for extra in (["--webcam", "3"], ["--webcam", "3"], ["--webcam", "4"], []):
        proc = subprocess.run([sys.executable, "-c", EVAL, "eval", "--model", str(model), "--data", str(tiny_ferplus),
                               "--split", "test", "--json", "--against", str(tiny_model), *extra],
                              cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "TORCH False" in proc.stderr
        runs.append(json.loads(proc.stdout))
    webcam3, again, webcam4, crops = runs
    assert webcam3 == again and webcam3["view"] == "webcam seed 3" and crops["view"] == "crops"
    assert webcam3["n"] == 32 and webcam3["n_dedup"] == 31
    assert webcam3["confusion"] != webcam4["confusion"] and webcam3["confusion"] != crops["confusion"]
    assert webcam3["against"] == again["against"]  # the model compared against: the same seeded view


def test_eval_webcam_view_at_an_angle_is_another_view_and_needs_webcam(tiny_ferplus: Path, tiny_model: Path) -> None:
    views = []
    for extra in (["--webcam", "3"], ["--webcam", "3", "--tilt", "1"]):
        proc = subprocess.run([sys.executable, "-m", "vrfer.cli.main", "eval", "--model", str(tiny_model), "--data",
                               str(tiny_ferplus), "--split", "test", "--json", *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        views.append(json.loads(proc.stdout))
    assert views[0]["view"] == "webcam seed 3" and views[1]["view"] == "webcam seed 3, tilt 1"
    assert views[0]["confusion"] != views[1]["confusion"] or views[0]["per_class"] != views[1]["per_class"]
    proc = subprocess.run([sys.executable, "-m", "vrfer.cli.main", "eval", "--model", str(tiny_model), "--data",
                           str(tiny_ferplus), "--tilt", "0.5"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: --tilt sets the webcam view's camera angle: give --webcam SEED with it\n"


def test_eval_webcam_view_changes_the_images_it_scores(tiny_ferplus: Path) -> None:
    import dataclasses

    from vrfer.training.datasets import load_dataset
    from vrfer.training.headset.webcam import webcam_batch

    faces = load_dataset("ferplus", tiny_ferplus, "test", "majority")
    view = dataclasses.replace(faces, images=webcam_batch(faces.images, np.random.default_rng(3), 1.0))
    assert view.images.shape == faces.images.shape and view.images.dtype == np.uint8
    changed = np.abs(view.images.astype(int) - faces.images).mean(axis=(1, 2))
    assert (changed > 2).all(), changed
