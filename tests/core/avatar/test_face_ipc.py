"""The shared-memory face-weights channel: layout, round trip, version check, torn writes, ownership."""
from __future__ import annotations

import os
import stat
import struct
import threading

import numpy as np
import pytest

from vrfer.core.avatar import face_ipc
from vrfer.core.avatar.face_ipc import SIZE, FaceShmReader, FaceShmWriter
from vrfer.core.errors import SinkError


def test_face_ipc_layout_is_the_documented_320_bytes(tmp_path):
    path = tmp_path / "face"
    w = np.arange(70, dtype=np.float32) / 70
    with FaceShmWriter(path) as writer:
        writer.publish(w, True, (0.5, 0.25), time_ns=123456789)
        raw = path.read_bytes()
    assert SIZE == 320 and len(raw) == 320
    magic, version, count, seq, flags, t = struct.unpack_from("<8sIIIIQ", raw, 0)
    assert (magic, version, count, seq, flags, t) == (b"VRFERFC\0", 1, 70, 2, 1, 123456789)
    assert struct.unpack_from("<2f", raw, 32) == (0.5, 0.25)
    np.testing.assert_array_equal(np.frombuffer(raw, np.float32, 70, 40), w)
    assert not path.exists(), "the writer removes the block on close"


def test_face_ipc_reader_sees_each_published_frame(tmp_path):
    path = tmp_path / "face"
    with FaceShmWriter(path) as writer, FaceShmReader(path) as reader:
        first = reader.read()
        assert not first.valid and not first.weights.any()
        w = np.zeros(70, np.float32)
        w[32] = w[33] = 0.9  # LIP_CORNER_PULLER_L/R
        writer.publish(w, True, (1.0, 0.5))
        frame = reader.read()
        np.testing.assert_array_equal(frame.weights, w)
        assert frame.valid and frame.confidence == (1.0, 0.5) and frame.seq == first.seq + 2
        writer.publish(np.zeros(70), False)
        assert not reader.read().valid


def test_face_ipc_reader_never_sees_a_torn_frame(tmp_path):
    path = tmp_path / "face"
    with FaceShmWriter(path) as writer, FaceShmReader(path) as reader:
        stop = threading.Event()

        def write():
            k = 0
            while not stop.is_set():
                k += 1
                writer.publish(np.full(70, k % 1000, np.float32), True)

        t = threading.Thread(target=write)
        t.start()
        try:
            for _ in range(2000):
                frame = reader.read()
                assert frame.seq % 2 == 0
                assert np.all(frame.weights == frame.weights[0]), "a frame mixed two updates"
        finally:
            stop.set()
            t.join()


def test_face_ipc_reader_rejects_other_layouts(tmp_path):
    path = tmp_path / "face"
    path.write_bytes(struct.pack("<8sIIIIQ", b"VRFERFC\0", 2, 70, 0, 0, 0) + bytes(SIZE - 32))
    path.chmod(0o600)
    with pytest.raises(SinkError) as err:
        FaceShmReader(path)
    assert str(err.value) == (f"{path}: face-weights channel has layout b'VRFERFC\\x00' v2 with 70 weights; "
                              "this reader understands b'VRFERFC\\x00' v1 with 70")
    path.write_bytes(b"short")
    with pytest.raises(SinkError) as err:
        FaceShmReader(path)
    assert str(err.value) == f"{path}: face-weights channel is truncated"
    with pytest.raises(SinkError) as err:
        FaceShmReader(tmp_path / "none")
    assert str(err.value) == f"no face-weights channel at {tmp_path / 'none'} (is vrfer running with --openxr?)"


def test_face_ipc_default_path_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("VRFER_FACE_SHM", raising=False)
    assert face_ipc.default_path().name.startswith("vrfer-face-")
    monkeypatch.setenv("VRFER_FACE_SHM", str(tmp_path / "x"))
    assert face_ipc.default_path() == tmp_path / "x"


def _refusal(path, make) -> str:
    with pytest.raises(SinkError) as err:
        make(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused") and "\n" not in msg
    return msg


def test_face_ipc_writer_creates_the_block_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with FaceShmWriter(tmp_path / "face") as writer:
            st = os.stat(writer.path)
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o400])
def test_face_ipc_refuses_a_precreated_foreign_mode_block(tmp_path, mode):
    path = tmp_path / "face"
    planted = b"planted by someone else".ljust(SIZE, b"\0")
    path.write_bytes(planted)
    path.chmod(mode)
    assert f"mode {mode:04o}" in _refusal(path, FaceShmWriter)
    assert path.read_bytes() == planted  # neither truncated nor written
    _refusal(path, FaceShmReader)


def test_face_ipc_refuses_a_symlink_without_touching_its_target(tmp_path):
    target = tmp_path / "victim"
    target.write_bytes(b"keep me")
    target.chmod(0o600)
    link = tmp_path / "face"
    link.symlink_to(target)
    assert "symbolic link" in _refusal(link, FaceShmWriter)
    assert target.read_bytes() == b"keep me"
    _refusal(link, FaceShmReader)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "would-be-created")
    _refusal(dangling, FaceShmWriter)
    assert not (tmp_path / "would-be-created").exists()


def test_face_ipc_refuses_a_fifo_without_hanging(tmp_path):
    path = tmp_path / "face"
    os.mkfifo(path, 0o600)
    assert "not a regular file" in _refusal(path, FaceShmWriter)
    _refusal(path, FaceShmReader)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_face_ipc_refuses_a_block_owned_by_another_user(tmp_path):
    path = tmp_path / "face"
    with FaceShmWriter(path):
        os.chown(path, 65534, 65534)  # nobody: right mode, wrong owner
        assert "owned by uid 65534" in _refusal(path, FaceShmReader)
    path.write_bytes(bytes(SIZE))
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    _refusal(path, FaceShmWriter)


def test_face_ipc_writer_reuses_its_own_stale_block(tmp_path):
    path = tmp_path / "face"
    path.write_bytes(b"stale")
    path.chmod(0o600)
    with FaceShmWriter(path) as writer, FaceShmReader(path) as reader:
        writer.publish(np.full(70, 0.5, np.float32), True)
        assert reader.read().weights[0] == 0.5
