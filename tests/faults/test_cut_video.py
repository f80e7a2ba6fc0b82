"""Fault: a video file cut in half. ``vrfer run`` processes the frames that are there, says in one
note line that the file ended early, prints its summary and exits 0; no hang, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
VRFER = Path(sys.executable).parent / "vrfer"
FRAMES = 30


def test_run_on_a_video_cut_in_half_ends_with_a_note(tmp_path, tiny_model):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (96, 64))
    noise = np.random.default_rng(0).integers(-6, 7, (64, 96, 3))
    for i in range(FRAMES):
        writer.write(np.clip(8 * i + noise, 0, 255).astype(np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    r = subprocess.run([str(VRFER), "run", "--source", str(cut), "--model", str(tiny_model), "--roi", "0,0,96,64"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    first = r.stdout.splitlines()[0]  # "frames: N processed, 0 dropped, 0 failed"
    n = int(first.split()[1])
    assert 0 < n < FRAMES and first == f"frames: {n} processed, 0 dropped, 0 failed"
    assert notes == [f"note: {cut} ended after {n} of {FRAMES} frames (truncated or damaged file; "
                     "its last, partial frame was left out)"]
