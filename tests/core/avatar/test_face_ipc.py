"""The shared-memory face-weights channel: layout, round trip, version check, torn writes."""
from __future__ import annotations

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
