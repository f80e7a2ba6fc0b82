"""Network surfaces stay local: a full ``vrfer run`` with every sink on listens nowhere, and the one
listener a user can ask for binds 127.0.0.1. The sockets are read from the running process's
/proc entries, as ``ss -lp`` would show them."""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VRFER = Path(sys.executable).parent / "vrfer"
TCP_LISTEN = "0A"

pytestmark = pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs Linux /proc/net")


def _address(hex_addr: str) -> tuple[str, int]:
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip, 16)))
    else:  # /proc prints IPv6 as four little-endian 32-bit words
        host = socket.inet_ntop(socket.AF_INET6, b"".join(struct.pack("<I", int(ip[i:i + 8], 16))
                                                          for i in range(0, 32, 8)))
    return host, int(port, 16)


def listening(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, host, port) of each socket ``pid`` holds that accepts traffic from anyone:
    TCP in LISTEN, UDP not connected to a peer."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        for line in lines:
            f = line.split()
            local, remote, state, inode = f[1], f[2], f[3], f[9]
            if inode not in inodes:
                continue
            if proto.startswith("tcp") and state == TCP_LISTEN or proto.startswith("udp") and _address(remote)[1] == 0:
                out.append((proto, *_address(local)))
    return out


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scan_running(tiny_model: Path, *extra: str) -> list[tuple[str, str, int]]:
    """Start a real `vrfer run` with every sink, wait for its first frames, list its listeners."""
    cmd = [str(VRFER), "run", "--source", "demo", "--model", str(tiny_model), "--jsonl", "--realtime",
           "--max-frames", "100000", "--openxr", "--osc-vrchat", "--osc-vrcft", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ))
    try:
        for _ in range(3):  # a few processed frames: every sink has sent by now
            assert proc.stdout.readline(), "vrfer run ended before processing a frame"
        return listening(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_run_with_every_sink_listens_nowhere(tiny_model):
    assert _scan_running(tiny_model) == []


def test_the_requested_listener_binds_loopback_only(tiny_model):
    port = _free_udp_port()
    assert _scan_running(tiny_model, "--osc-vrchat-listen", str(port)) == [("udp", "127.0.0.1", port)]


def test_the_scan_sees_a_wildcard_listener():
    """The scanner is not blind: a socket bound to every interface in this process is reported."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        assert ("udp", "0.0.0.0", s.getsockname()[1]) in listening(os.getpid())
