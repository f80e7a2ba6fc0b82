"""``vrfer run`` and the ``vrfer`` command itself, in subprocesses, as a user would run them."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.paths import ferplus_available

REPO = Path(__file__).resolve().parents[2]
VRFER = Path(sys.executable).parent / "vrfer"
KEYS = {"frame", "file", "label", "confidence", "probs", "face", "face_path", "face_score", "latency_ms"}


def vrfer(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(VRFER), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_run_jsonl_prints_one_valid_line_per_frame(tiny_model):
    r = vrfer("run", "--source", "demo", "--model", str(tiny_model), "--max-frames", "12", "--jsonl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 12
    records = [json.loads(line) for line in lines]
    assert [rec["frame"] for rec in records] == list(range(12))
    for rec in records:
        assert KEYS <= set(rec)
        assert "total" in rec["latency_ms"]
        assert (rec["label"] is None) == (not rec["face"])
        if rec["face"]:
            assert set(rec["probs"]) == {"neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                                         "fear", "contempt"}
            assert sum(rec["probs"].values()) == pytest.approx(1.0, abs=1e-4)
            assert rec["confidence"] == rec["probs"][rec["label"]]
            assert {"locate", "preprocess", "model", "smooth"} <= set(rec["latency_ms"])
    if ferplus_available():
        assert all(rec["truth"] for rec in records) and all(rec["file"].endswith(".png") for rec in records)
        assert any(rec["face"] for rec in records)


def test_run_jsonl_lines_carry_the_mouth_shapes_of_a_model_that_has_them(make_onnx, tiny_meta):
    model = make_onnx(meta={**tiny_meta, "vrfer.shapes": "jaw_open,lips_apart"}, shapes=2)
    r = vrfer("run", "--source", "demo", "--model", str(model), "--max-frames", "6", "--jsonl")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 6 and all(set(rec["shapes"]) == {"jaw_open", "lips_apart"} for rec in records)
    assert all(0.0 <= v <= 1.0 for rec in records for v in rec["shapes"].values())
    faced = [rec["shapes"]["jaw_open"] for rec in records if rec["face"]]
    assert faced and all(v > 0 for v in faced)  # a sigmoid's output: a face gives a real value


def test_run_folder_source_names_each_file(tmp_path, tiny_model):
    folder = tmp_path / "mouth"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "c.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    r = vrfer("run", "--source", str(folder), "--model", str(tiny_model), "--roi", "0,0,80,60", "--jsonl")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(rec["frame"], rec["file"], rec["face"]) for rec in records] == [
        (0, "a.png", True), (1, "b.png", True), (2, "c.jpg", True)]
    assert all("truth" not in rec for rec in records)
    # Mouth-camera mode has no detector: the user's rectangle, presence 1.
    assert all((rec["face_path"], rec["face_score"]) == ("roi", 1.0) for rec in records)


def _mixed_folder(folder: Path) -> None:
    """Good, corrupt, empty, 16-bit and 1x1 images."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "1_good.png"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    (folder / "2_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "3_empty.jpg").write_bytes(b"")
    cv2.imwrite(str(folder / "4_deep.png"), rng.integers(0, 65536, (120, 160, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "5_dot.png"), np.full((1, 1, 3), 200, np.uint8))


def test_run_folder_names_every_skipped_file_and_counts_them(tmp_path, tiny_model):
    folder = tmp_path / "mixed"
    _mixed_folder(folder)
    r = vrfer("run", "--source", str(folder), "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("WARNING: skipped")]
    assert warnings == [
        f"WARNING: skipped '{folder / '2_corrupt.png'}': not a readable image (corrupt or unsupported format)",
        f"WARNING: skipped '{folder / '3_empty.jpg'}': empty file"]
    assert r.stdout.splitlines()[0] == "frames: 3 processed, 2 skipped (unreadable or empty files), 0 dropped, 0 failed"

    r = vrfer("run", "--source", str(folder), "--model", str(tiny_model), "--jsonl")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    # Skip lines come as the source meets the files (beside the frame being processed then).
    assert [(rec["file"], rec["skipped"]) for rec in records if rec["frame"] is None] == [
        ("2_corrupt.png", "not a readable image (corrupt or unsupported format)"), ("3_empty.jpg", "empty file")]
    frames = [rec for rec in records if rec["frame"] is not None]
    assert [(rec["frame"], rec["file"]) for rec in frames] == [(0, "1_good.png"), (1, "4_deep.png"), (2, "5_dot.png")]
    assert not any(rec["face"] for rec in frames)  # random pixels, a 16-bit image, a single pixel: no face, no failure


def test_run_summary_reports_frames_and_latency(tmp_path, tiny_model):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 48, 3), 60 * i, np.uint8))
    r = vrfer("run", "--source", str(folder), "--model", str(tiny_model), "--roi", "0,0,48,48")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "frames: 4 processed, 0 dropped, 0 failed"
    assert out[1] == "face found: 4/4 (100.0%)"
    assert out[2] == "accuracy: no ground truth in this source"
    assert [line.split()[0] for line in out[4:]] == ["locate", "preprocess", "model", "smooth", "total"]


@pytest.fixture
def bad_inputs(tmp_path, tiny_model, make_onnx):
    """Values for the placeholders of the bad-input table."""
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (tmp_path / "broken.mp4").write_bytes(os.urandom(3000))
    foreign = make_onnx("foreign.onnx", meta={"producer": "another tool"})
    with socket.socket() as s:  # a port that was free a moment ago: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"tmp": tmp_path, "model": tiny_model, "foreign": foreign, "port": port}


BAD_INPUTS = [
    # (arguments, extra environment, the one stderr line)
    ("--source 7 --model {model}", {}, "error: camera 7 cannot be opened (no such device)"),
    ("--source {tmp}/broken.png --model {model}", {},
     "error: image '{tmp}/broken.png' cannot be read (corrupt or unsupported)"),
    ("--source {tmp}/broken.mp4 --model {model}", {},
     "error: '{tmp}/broken.mp4' is not a readable video (corrupt or unsupported format)"),
    ("--source {tmp}/missing.mp4 --model {model}", {}, "error: '{tmp}/missing.mp4' does not exist"),
    ("--source http://127.0.0.1:{port}/stream --model {model}", {},
     "error: http://127.0.0.1:{port}/stream does not answer (connection refused)"),
    ("--source demo --model {tmp}/missing.onnx", {}, "error: {tmp}/missing.onnx: model file not found"),
    ("--source demo --model {foreign}", {},
     "error: {foreign}: not a vrfer model (metadata lacks vrfer.classes)"),
    ("--source demo", {"VRFER_MODEL": "{tmp}/student.onnx"},
     "error: no model is installed yet ({tmp}/student.onnx is missing): train and export one with "
     "'vrfer train training/configs/student.toml' and 'vrfer export', or pass --model PATH"),
    ("--source demo --model {model} --max-frames 0", {},
     "error: argument --max-frames: expected a number >= 1, got 0"),
    ("--source demo --model {model} --roi 1,2,3", {},
     "error: argument --roi: expected X,Y,W,H in whole pixels, got '1,2,3'"),
    ("--source demo --model {model} --strength 2", {},
     "error: argument --strength: expected a number from 0 to 1, got 2"),
    ("--source demo --model {model} --roi 0,0,0,10", {},
     "error: face roi (0, 0, 0, 10) is empty: width and height must be at least 1 px"),
]


@pytest.mark.parametrize("args, env, message", BAD_INPUTS,
                         ids=["camera", "image", "video", "no-file", "url", "no-onnx", "foreign-onnx",
                              "no-model", "max-frames", "roi-format", "strength", "empty-roi"])
def test_run_bad_input_exits_2_with_one_line(bad_inputs, args, env, message):
    r = vrfer("run", *args.format(**bad_inputs).split(), env={k: v.format(**bad_inputs) for k, v in env.items()})
    assert r.returncode == 2
    assert r.stderr.splitlines() == [message.format(**bad_inputs)]
    assert r.stdout == ""


def test_run_url_that_never_answers_times_out_with_one_line(tiny_model):
    with socket.socket() as server:  # accepts the connection, then says nothing
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/stream"
        r = vrfer("run", "--source", url, "--model", str(tiny_model))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {url} does not answer (timed out)"]


# --- the vrfer command ---------------------------------------------------------------------

def test_main_without_a_command_is_one_line():
    r = vrfer()
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: the following arguments are required: COMMAND"]


def test_main_unknown_command_is_one_line():
    r = vrfer("fly")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: argument COMMAND: invalid choice: 'fly' (choose from ")


def test_main_help_lists_run():
    r = vrfer("--help")
    assert r.returncode == 0
    assert "run" in r.stdout


MISSING_EXTRA = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tmp!r})
    sys.modules["torch"] = None  # as if the training extra were not installed
    import vrfer.cli.main as main_mod
    main_mod.COMMANDS = ("vrfer.cli.run", "needs_torch")
    sys.exit(main_mod.main(sys.argv[1:]))
""")


def test_main_command_needing_a_missing_extra_says_what_to_install(tmp_path):
    (tmp_path / "needs_torch.py").write_text("import torch\n\ndef add_parser(sub):\n    raise AssertionError\n")
    r = subprocess.run([sys.executable, "-c", MISSING_EXTRA.format(tmp=str(tmp_path)), "needs_torch", "--epochs", "3"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: vrfer needs_torch needs the training extra: pip install -e '.[train]'"]


def test_main_training_command_without_the_training_code_says_so(tmp_path):
    # The desktop bundle leaves vrfer.training out: `vrfer train` then says so in one line.
    code = ("import sys; sys.modules['vrfer.training'] = None\n"
            "import vrfer.cli.main as m; sys.exit(m.main(sys.argv[1:]))")
    config = tmp_path / "student.toml"
    config.write_text("")
    r = subprocess.run([sys.executable, "-c", code, "train", str(config)], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: vrfer train needs the training code, which the desktop bundle leaves out: "
                                     "pip install 'vrfer[train]'"]
