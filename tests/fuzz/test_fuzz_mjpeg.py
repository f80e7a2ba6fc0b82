"""Fuzz: the MJPEG multipart parser on arbitrary byte streams, split at arbitrary read sizes.

Properties: the only exception is StreamEnded (its documented end of stream); the buffer never
holds more than the part and header limits allow; a stream of good parts loses none of them,
whatever the read sizes; a good frame after garbage is recovered."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzkit import within
from vrfer.core.sources import mjpeg

BOUNDARY = b"frame"
PART_LIMIT, HEADER_LIMIT = 1024, 64  # small limits, so short fuzz streams reach them


def _jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


JPEGS = [_jpeg(v) for v in (0, 128, 255)]
assert all(len(j) < PART_LIMIT for j in JPEGS)

PIECES = st.one_of(
    st.binary(max_size=40), st.binary(min_size=1000, max_size=1200),
    st.sampled_from([b"--" + BOUNDARY, b"\r\n--" + BOUNDARY + b"\r\n", b"--" + BOUNDARY + b"--", b"\r\n", b"\n",
                     b"Content-Length: 12\r\n", b"content-length:0\r\n", b"Content-Length: 99999999999\r\n",
                     b"Content-Type: image/jpeg\r\n", b"-", b"---" + BOUNDARY, b"\xff\xd8", b"\xff\xd9",
                     b"x" * 100]),
)
GARBAGE = st.lists(PIECES, max_size=12).map(b"".join)


def part(body: bytes, length: bool = True) -> bytes:
    head = b"\r\n--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def run(data: bytes, chunks: list[int]) -> tuple[list[bytes], int]:
    """All parts of ``data`` read in ``chunks``-sized pieces (cycled); and the largest buffer seen."""
    pos, calls, peak = 0, 0, 0
    reader: mjpeg.MultipartReader

    def read1(n: int) -> bytes:
        nonlocal pos, calls, peak
        peak = max(peak, len(reader._buf))
        size = min(n, chunks[calls % len(chunks)])
        calls += 1
        out = data[pos:pos + size]
        pos += len(out)
        return out

    reader = mjpeg.MultipartReader(read1, BOUNDARY)
    parts: list[bytes] = []
    with pytest.MonkeyPatch.context() as mp, within(5.0):
        mp.setattr(mjpeg, "MAX_PART_BYTES", PART_LIMIT)
        mp.setattr(mjpeg, "MAX_HEADER_BYTES", HEADER_LIMIT)
        try:
            while True:
                parts.append(reader.next_part())
                peak = max(peak, len(reader._buf))
        except mjpeg.StreamEnded:
            pass
    return parts, peak


CHUNKS = st.lists(st.integers(1, 300), min_size=1, max_size=8)


def _bounded(peak: int, chunks: list[int]) -> None:
    assert peak <= PART_LIMIT + HEADER_LIMIT + 2 * max(chunks) + 2 * len(BOUNDARY) + 16, peak


@given(data=st.one_of(st.binary(max_size=2000), GARBAGE), chunks=CHUNKS)
def test_arbitrary_streams_end_only_with_stream_ended_and_stay_bounded(data, chunks):
    parts, peak = run(data, chunks)
    _bounded(peak, chunks)
    assert all(len(p) <= max(PART_LIMIT, len(data)) for p in parts)


@given(frames=st.lists(st.sampled_from(JPEGS), min_size=1, max_size=5), lengths=st.lists(st.booleans(), min_size=5,
       max_size=5), chunks=CHUNKS)
def test_good_parts_are_all_delivered_whatever_the_read_sizes(frames, lengths, chunks):
    data = b"".join(part(f, lengths[i]) for i, f in enumerate(frames)) + b"\r\n--" + BOUNDARY + b"--\r\n"
    parts, peak = run(data, chunks)
    assert parts == frames
    _bounded(peak, chunks)


# The closing delimiter ("--frame--") ends a stream by definition, garbage or not.
@given(garbage=GARBAGE.filter(lambda g: BOUNDARY + b"-" not in g), chunks=CHUNKS, length=st.booleans())
def test_a_good_frame_after_garbage_is_recovered(garbage, chunks, length):
    good = JPEGS[1]
    data = garbage + part(good, length) + part(JPEGS[2], length) + b"\r\n--" + BOUNDARY + b"--\r\n"
    parts, peak = run(data, chunks)
    assert JPEGS[2] in parts  # at worst the garbage swallows the first good frame, never the stream
    _bounded(peak, chunks)


@given(body=st.binary(max_size=600), prefix=st.booleans())
def test_decode_jpeg_is_an_image_or_none(body, prefix):
    data = (b"\xff\xd8" + body + b"\xff\xd9") if prefix else body
    image = mjpeg.decode_jpeg(data)
    assert image is None or (image.dtype == np.uint8 and image.ndim == 3 and image.size > 0)


@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=80))
def test_boundary_of_any_content_type_is_bytes_or_none(content_type):
    # http.client decodes header values as latin-1, so every header is in this alphabet
    token = mjpeg._boundary(content_type)
    assert token is None or (isinstance(token, bytes) and token and not token.startswith(b"-"))
