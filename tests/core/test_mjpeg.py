"""The multipart parser and JPEG checks, fed with the exact bytes MJPEG servers send."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vrfer.core.sources import mjpeg

BOUNDARY = b"123456789000000000000987654321"  # what ESP32 CameraWebServer declares


def jpeg(value: int, size: tuple[int, int] = (64, 48)) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((size[1], size[0], 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def esp32_part(body: bytes, length: int | bool | None = None) -> bytes:
    """One part as esp32-camera's stream handler writes it; length False: no Content-Length."""
    head = b"\r\n--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
    if length is not False:
        head += b"Content-Length: %d\r\nX-Timestamp: 1.000000\r\n" % (len(body) if length is None else length)
    return head + b"\r\n" + body


def reader_over(data: bytes, chunk: int = 4096) -> mjpeg.MultipartReader:
    pos = 0

    def read1(n: int) -> bytes:
        nonlocal pos
        out = data[pos:pos + min(n, chunk)]
        pos += len(out)
        return out

    return mjpeg.MultipartReader(read1, BOUNDARY)


def all_parts(reader: mjpeg.MultipartReader) -> list[bytes]:
    parts = []
    with pytest.raises(mjpeg.StreamEnded):
        while True:
            parts.append(reader.next_part())
    return parts


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_reader_splits_esp32_parts_whatever_the_read_size(chunk):
    frames = [jpeg(v) for v in (10, 120, 240)]
    reader = reader_over(b"".join(esp32_part(f) for f in frames), chunk)
    assert all_parts(reader) == frames
    assert reader.garbage_bytes == 0
    assert not reader.partial


def test_reader_without_content_length_splits_at_the_next_delimiter():
    frames = [jpeg(v) for v in (30, 90)]
    data = b"".join(esp32_part(f, length=False) for f in frames) + b"\r\n--" + BOUNDARY + b"--\r\n"
    assert all_parts(reader_over(data, 100)) == frames


def test_reader_recovers_when_a_content_length_overstates_the_body():
    good, cut = jpeg(50), jpeg(150)
    data = esp32_part(cut[:200], length=len(cut)) + esp32_part(good) + esp32_part(good)
    parts = all_parts(reader_over(data))
    assert parts[0] == cut[:200]  # the lying part comes back short, for the caller to reject
    assert parts[1:] == [good, good]


def test_reader_skips_garbage_between_parts_and_counts_it():
    good = jpeg(80)
    data = b"\x00junk" * 20 + esp32_part(good) + b"\xde\xad\xbe\xef" * 50 + esp32_part(good)
    reader = reader_over(data, 33)
    assert all_parts(reader) == [good, good]
    assert reader.garbage_bytes == 100 + 200


def test_reader_reports_a_stream_that_ends_inside_a_part():
    good = jpeg(80)
    reader = reader_over(esp32_part(good) + esp32_part(good)[:-100])
    assert reader.next_part() == good
    with pytest.raises(mjpeg.StreamEnded):
        reader.next_part()
    assert reader.partial


def test_reader_stops_at_the_closing_delimiter():
    good = jpeg(80)
    reader = reader_over(esp32_part(good) + b"\r\n--" + BOUNDARY + b"--\r\n" + esp32_part(good))
    assert all_parts(reader) == [good]
    assert not reader.partial


@pytest.mark.parametrize("content_type, boundary", [
    ("multipart/x-mixed-replace;boundary=123456789000000000000987654321", BOUNDARY),
    ('multipart/x-mixed-replace; boundary="frame"', b"frame"),
    ("multipart/x-mixed-replace; boundary=--myboundary", b"myboundary"),
    ("image/jpeg", None),
    ("multipart/x-mixed-replace", None),
])
def test_boundary_is_read_from_the_content_type(content_type, boundary):
    assert mjpeg._boundary(content_type) == boundary


def test_decode_jpeg_rejects_truncated_and_garbage_data():
    data = jpeg(200, (320, 240))
    image = mjpeg.decode_jpeg(data)
    assert image is not None and image.shape == (240, 320, 3)
    assert abs(int(image.mean()) - 200) <= 2
    assert mjpeg.decode_jpeg(data + b"\r\n\x00\x00") is not None  # padding after EOI is fine
    assert mjpeg.decode_jpeg(data[: len(data) * 3 // 4]) is None
    assert mjpeg.decode_jpeg(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))) is None
    assert mjpeg.decode_jpeg(b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9") is None
