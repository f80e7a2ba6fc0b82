"""``vrfer sources`` through the real command line entry point."""
from __future__ import annotations

from pathlib import Path

import pytest

from vrfer.cli.main import main


def test_sources_command_reports_no_cameras_and_lists_the_other_kinds(capsys, tmp_path, monkeypatch):
    if any(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices")
    monkeypatch.setenv("VRFER_FERPLUS", str(tmp_path))
    assert main(["sources", "--max-index", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "no cameras could be opened (tried indices 0-3)"
    assert out[1] == "other sources:"
    examples = [line.split()[1] for line in out[2:]]
    assert examples == ["0", "clip.mp4", "frames/", "face.png", "http://192.168.4.1:81/stream", "demo"]
    assert out[-1].endswith(f"a synthetic cartoon face: no FER+ data at {tmp_path} (set VRFER_FERPLUS)")


def test_sources_command_names_the_ferplus_demo(capsys, ferplus_dir):
    assert main(["sources", "--max-index", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"FER+ Test faces from {ferplus_dir}, with their labels")
