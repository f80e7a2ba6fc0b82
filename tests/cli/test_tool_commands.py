"""The measuring and training tools' commands (``vrfer bench template|adapt|teacher-cache``,
``vrfer headset data|train|bench``, ``vrfer mouth targets|eval``) through the real entry point:
bad input is refused in one line with exit 2 before anything runs, and the template measurement
writes a template the face stage reads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrfer.cli.main import main
from vrfer.core.face_template import LANDMARKS, load_template


@pytest.mark.parametrize("argv, says", [
    (["bench", "adapt", "--k", "5,x"], "argument --k: expected comma-separated numbers, got '5,x'"),
    (["bench", "adapt", "--sweep", "1;3"], "argument --sweep: expected comma-separated numbers, got '1;3'"),
    (["bench", "template", "--n", "0"], "argument --n: expected a number >= 1, got 0"),
    (["bench", "teacher-cache"], "the following arguments are required: config"),
    (["bench", "teacher-cache", "c.toml", "--steps", "many"], "argument --steps: expected a whole number, got 'many'"),
    (["headset", "data", "--n", "-3"], "argument --n: expected a number >= 1, got -3"),
    (["headset", "data", "--webcam", "1.5"], "argument --webcam: expected a number from 0 to 1, got 1.5"),
    (["headset", "data", "--face-free", "-1"], "argument --face-free: expected a number >= 0, got -1"),
    (["eval", "--model", "m.onnx", "--webcam", "-1"], "argument --webcam: expected a number >= 0, got -1"),
    (["headset", "data", "--face-free", "many"], "argument --face-free: expected a whole number, got 'many'"),
    (["headset", "train", "--epochs", "0"], "argument --epochs: expected a number >= 1, got 0"),
    (["headset", "bench", "--split", "train"], "argument --split: invalid choice: 'train' (choose from 'test', 'valid')"),
    (["headset", "bench", "--webcam", "2"], "argument --webcam: expected a number from 0 to 1, got 2"),
    (["mouth", "eval"], "the following arguments are required: model"),
    (["mouth"], "the following arguments are required: VERB"),
])
def test_tool_commands_refuse_bad_input_in_one_line(argv: list[str], says: str, capsys) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {says}\n" and captured.out == ""


def test_bench_template_writes_a_template_the_face_stage_reads(ferplus_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "template.json"
    assert main(["bench", "template", "--n", "6", "--seed", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")
    data = json.loads(out.read_text())
    assert data["split"] == "FER2013Train" and data["seed"] == 3 and data["images_tried"] == 6
    template = load_template(out)
    assert template.names == tuple(LANDMARKS) and template.points.shape == (len(LANDMARKS), 2)
