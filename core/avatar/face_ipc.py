"""A shared-memory channel carrying XR_FB_face_tracking2 weights to other processes.

vrfer's Python API layer only serves OpenXR code in vrfer's own process. The native implicit
OpenXR layer (openxr_layer/vrfer_face_layer.c, which must agree with this file) reads this
block inside games; so can any other local tool. The layout is fixed and versioned,
little-endian, 320 bytes:

    offset  type        field
    0       char[8]     magic          b"VRFERFC\\0"
    8       uint32      version        1
    12      uint32      weight_count   70 (XrFaceExpression2FB order)
    16      uint32      seq            seqlock counter: odd while the writer is mid-update
    20      uint32      flags          bit 0: valid (a face is seen and the user is present)
    24      uint64      time_ns        CLOCK_MONOTONIC time of the expression state
    32      float32[2]  confidence     lower face, upper face (XrFaceConfidence2FB order)
    40      float32[70] weights
    320     (end)

Reading: load ``seq``; if odd, retry; copy the block; load ``seq`` again; if it changed, retry.
The writer bumps ``seq`` to odd, writes the fields, then bumps it to even. A reader seeing an
unknown ``magic``/``version`` must stop rather than guess. The default path is
``/dev/shm/vrfer-face-<uid>`` (``$VRFER_FACE_SHM`` overrides it).
"""
from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrfer.core.errors import SinkError

MAGIC = b"VRFERFC\0"
VERSION = 1
WEIGHT_COUNT = 70
CONFIDENCE_COUNT = 2
_HEADER = struct.Struct("<8sIIIIQ")  # magic, version, weight_count, seq, flags, time_ns
_SEQ_OFFSET = 16
_SEQ = struct.Struct("<I")
_BODY_OFFSET = _HEADER.size  # 32
SIZE = _BODY_OFFSET + 4 * (CONFIDENCE_COUNT + WEIGHT_COUNT)  # 320
FLAG_VALID = 1


def default_path() -> Path:
    env = os.environ.get("VRFER_FACE_SHM")
    if env:
        return Path(env)
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    return base / f"vrfer-face-{os.getuid() if hasattr(os, 'getuid') else 0}"


@dataclass(frozen=True)
class FaceFrame:
    weights: np.ndarray  # float32[70]
    confidence: tuple[float, float]
    valid: bool
    time_ns: int
    seq: int


class FaceShmWriter:
    """Owns the block: creates it, publishes frames, and removes it on ``close()``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, SIZE)
                self._map = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)
        except OSError as e:
            raise SinkError(f"cannot create the face-weights channel {self.path}: {e.strerror}") from None
        self._seq = 0
        _HEADER.pack_into(self._map, 0, MAGIC, VERSION, WEIGHT_COUNT, self._seq, 0, 0)

    def publish(self, weights: np.ndarray, valid: bool, confidence: tuple[float, float] = (1.0, 1.0),
                time_ns: int | None = None) -> None:
        w = np.asarray(weights, np.float32)
        if w.shape != (WEIGHT_COUNT,):
            raise ValueError(f"expected {WEIGHT_COUNT} weights, got shape {w.shape}")
        t = time.monotonic_ns() if time_ns is None else time_ns
        self._seq += 1  # odd: readers back off
        _SEQ.pack_into(self._map, _SEQ_OFFSET, self._seq & 0xFFFFFFFF)
        struct.pack_into("<IQ", self._map, 20, FLAG_VALID if valid else 0, t)
        struct.pack_into("<2f", self._map, _BODY_OFFSET, *confidence)
        self._map[_BODY_OFFSET + 8:SIZE] = w.tobytes()
        self._seq += 1  # even: consistent again
        _SEQ.pack_into(self._map, _SEQ_OFFSET, self._seq & 0xFFFFFFFF)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FaceShmReader:
    """Maps an existing block read-only and returns consistent frames."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise SinkError(f"no face-weights channel at {self.path} (is vrfer running with --openxr?)") from None
        try:
            if os.fstat(fd).st_size < SIZE:
                raise SinkError(f"{self.path}: face-weights channel is truncated")
            self._map = mmap.mmap(fd, SIZE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, version, count, _, _, _ = _HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or version != VERSION or count != WEIGHT_COUNT:
            self._map.close()
            raise SinkError(f"{self.path}: face-weights channel has layout {magic!r} v{version} with {count} "
                            f"weights; this reader understands {MAGIC!r} v{VERSION} with {WEIGHT_COUNT}")

    def read(self, timeout: float = 0.2) -> FaceFrame:
        deadline = time.monotonic() + timeout
        while True:
            (seq,) = _SEQ.unpack_from(self._map, _SEQ_OFFSET)
            if not seq & 1:
                block = bytes(self._map[:SIZE])
                (seq2,) = _SEQ.unpack_from(self._map, _SEQ_OFFSET)
                if seq2 == seq:
                    break
            if time.monotonic() > deadline:
                raise SinkError(f"{self.path}: the writer never finished an update (stuck mid-write?)")
            time.sleep(0)  # let a writer that was preempted mid-update finish
        _, _, _, _, flags, t = _HEADER.unpack_from(block, 0)
        conf = struct.unpack_from("<2f", block, _BODY_OFFSET)
        weights = np.frombuffer(block, np.float32, WEIGHT_COUNT, _BODY_OFFSET + 8).copy()
        return FaceFrame(weights, conf, bool(flags & FLAG_VALID), t, seq)

    def close(self) -> None:
        self._map.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
