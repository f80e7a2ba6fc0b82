"""cli/avatar_flags.py: the `vrfer run` sink flags, and one real run feeding a loopback receiver."""
from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.cli.avatar_flags import add_arguments, make_sinks
from vrfer.core.avatar.osc import VRChatSink, VRCFTSink
from vrfer.core.avatar.shapes import BABBLE
from vrfer.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_avatar_flags_defaults_make_no_sinks():
    args = parse()
    assert (args.osc_vrchat, args.osc_vrcft, args.osc_vrchat_listen, args.openxr) == (None, None, None, False)
    assert make_sinks(args) == []


def test_avatar_flags_bare_flags_use_the_documented_ports():
    args = parse("--osc-vrchat", "--osc-vrcft", "--osc-vrchat-listen")
    assert (args.osc_vrchat, args.osc_vrcft, args.osc_vrchat_listen) == ("127.0.0.1:9000", "127.0.0.1:8888", 9001)


def test_avatar_flags_make_sinks_builds_both_and_warns_about_flicker(osc_listener, caplog):
    target = f"127.0.0.1:{osc_listener.port}"
    sinks = make_sinks(parse("--osc-vrchat", target, "--osc-vrchat-ft", "--osc-vrcft", target, "--osc-rate", "30"))
    try:
        assert [type(s) for s in sinks] == [VRChatSink, VRCFTSink]
        assert all(s.target == target and s.timing.rate_hz == 30 for s in sinks)
        assert sinks[0].listen_address is None
    finally:
        for s in sinks:
            s.close()
    assert any("may flicker" in r.getMessage() for r in caplog.records)


def test_avatar_flags_bad_target_is_one_line():
    with pytest.raises(ConfigError) as err:
        make_sinks(parse("--osc-vrcft", "127.0.0.1:babble"))
    assert str(err.value) == "OSC target '127.0.0.1:babble': port must be a number, as in 127.0.0.1:8888"


def test_vrfer_run_feeds_the_vrcft_sink(tmp_path, tiny_model, osc_listener):
    folder = tmp_path / "mouth"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    vrfer = REPO / ".venv" / "bin" / "vrfer"
    if not vrfer.exists():
        pytest.skip("no .venv/bin/vrfer (run scripts/setup.sh)")
    r = subprocess.run([str(vrfer), "run", "--source", str(folder), "--model", str(tiny_model), "--roi", "0,0,80,60",
                        "--osc-vrcft", f"127.0.0.1:{osc_listener.port}", "--jsonl"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    msgs = osc_listener.take(45)
    addresses = {a for a, _ in msgs}
    assert addresses == {"/" + b for b in BABBLE}
    assert all(0.0 <= args[0] <= 1.0 for _, args in msgs)
