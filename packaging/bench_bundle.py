"""Size and start-up time of the desktop bundle, against the installed Python program, in one run.

    python packaging/bench_bundle.py dist/vrfer [--runs 7]

Start-up is the wall time of ``app --source demo --screenshot OUT --after-frames 1``: process
start, imports, model and face mesh loaded, the window drawn with its first result, the PNG
written, exit. The two programs run alternately so that a change of machine load falls on
both; the figure to compare across machines is the ratio, printed with the load average.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def startup_seconds(argv: list[str], out: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run([*argv, "app", "--source", "demo", "--screenshot", str(out), "--after-frames", "1"],
                         env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - start
    if res.returncode != 0 or not out.is_file():
        raise SystemExit(f"error: {' '.join(argv)} failed: {res.stderr.strip().splitlines()[-1:]}")
    out.unlink()
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path, help="the bundle folder (dist/vrfer)")
    ap.add_argument("--runs", type=int, default=7, help="start-ups of each program (default 7)")
    args = ap.parse_args(argv)
    exe = args.bundle / ("vrfer.exe" if sys.platform == "win32" else "vrfer")
    if not exe.is_file():
        raise SystemExit(f"error: {exe} does not exist: build it with make bundle")
    programs = {"bundle": [str(exe)], "python -m vrfer.cli.main": [sys.executable, "-m", "vrfer.cli.main"]}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, VRFER_CONFIG_DIR=str(Path(tmp) / "config"), VRFER_LOG_DIR=str(Path(tmp) / "logs"))
        env.pop("QT_QPA_PLATFORM", None)  # --screenshot goes offscreen by itself
        times: dict[str, list[float]] = {name: [] for name in programs}
        load_before = os.getloadavg()[0]
        for name, cmd in programs.items():  # one unmeasured start each: the page cache, not the program
            startup_seconds(cmd, Path(tmp) / "warm.png", env)
        for _ in range(args.runs):
            for name, cmd in programs.items():
                times[name].append(startup_seconds(cmd, Path(tmp) / "shot.png", env))
        load_after = os.getloadavg()[0]
    internal = args.bundle / "_internal"
    print(f"bundle {args.bundle}: {folder_size(args.bundle) / 2**20:.0f} MiB in one folder "
          f"({folder_size(internal / 'PyQt6') / 2**20:.0f} MiB Qt, {folder_size(internal / 'cv2') / 2**20:.0f} MiB "
          f"OpenCV, {folder_size(internal / 'mediapipe') / 2**20:.0f} MiB mediapipe)")
    ref = np.percentile(times["python -m vrfer.cli.main"], [50, 99])
    for name, values in times.items():
        p50, p99 = np.percentile(values, [50, 99])
        print(f"start-up to first screenshot, {name}: p50 {p50:.2f} s, p99 {p99:.2f} s, "
              f"ratio {p50 / ref[0]:.2f} / {p99 / ref[1]:.2f} ({len(values)} runs)")
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
