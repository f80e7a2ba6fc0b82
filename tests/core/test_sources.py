"""Frame sources against real files, a real loopback MJPEG server and the real FER+ data."""
from __future__ import annotations

import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import SourceError
from vrfer.core.ferplus import majority_faces
from vrfer.core.sources import SYNTHETIC_TEXT, CameraSource, open_source

VIDEO_FRAMES = 24


def level(image: np.ndarray) -> int:
    return int(round(float(image.mean())))


# ---------------------------------------------------------------- folders


def write_images(folder: Path, names_and_values: list[tuple[str, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in names_and_values:
        assert cv2.imwrite(str(folder / name), np.full((40, 50, 3), value, np.uint8))


def test_folder_delivers_images_sorted_by_name_with_file_names(tmp_path):
    write_images(tmp_path, [("c.png", 30), ("a.png", 10), ("b.bmp", 20)])
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as src:
        assert not src.live
        frames = list(src)
        assert src.ended
        assert src.read() is None
    assert [f.file for f in frames] == ["a.png", "b.bmp", "c.png"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert [level(f.image) for f in frames] == [10, 20, 30]
    assert all(f.image.shape == (40, 50, 3) and f.image.dtype == np.uint8 for f in frames)
    assert not frames[0].image.flags.writeable  # frames are frozen values


def test_folder_skips_an_unreadable_image_without_a_gap_in_indices(tmp_path):
    write_images(tmp_path, [("1.png", 10), ("3.png", 30)])
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with open_source(str(tmp_path)) as src:
        frames = list(src)
        assert src.skipped == 1
        assert src.status == "skipped unreadable image '2.png' (1 so far)"
    assert [(f.index, f.file) for f in frames] == [(0, "1.png"), (1, "3.png")]


def test_single_image_file_is_a_one_frame_source(tmp_path):
    write_images(tmp_path, [("face.jpg", 77)])
    with open_source(str(tmp_path / "face.jpg")) as src:
        frames = list(src)
    assert [f.file for f in frames] == ["face.jpg"]


def test_folder_realtime_is_paced(tmp_path):
    write_images(tmp_path, [(f"{i:02d}.png", i) for i in range(10)])
    with open_source(str(tmp_path), realtime=True) as src:
        start = time.perf_counter()
        frames = list(src)
        elapsed = time.perf_counter() - start
    assert len(frames) == 10
    assert elapsed > 0.2  # 9 frame periods at 30 fps are 0.3 s; only the lower bound is safe


# ---------------------------------------------------------------- video files


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    assert writer.isOpened()
    noise = np.random.default_rng(0).integers(-8, 9, (120, 160, 3))
    for i in range(VIDEO_FRAMES):  # frame i has mean level 10*i; noise makes the file non-trivial
        writer.write(np.clip(10 * i + noise, 0, 255).astype(np.uint8))
    writer.release()
    return path


def test_video_file_is_read_fully_in_order(video):
    with open_source(str(video)) as src:
        assert not src.live and src.fps == pytest.approx(30)
        frames = list(src)
        assert src.ended and src.status is None
    assert [f.index for f in frames] == list(range(VIDEO_FRAMES))
    levels = [level(f.image) for f in frames]
    assert all(abs(lv - 10 * i) <= 3 for i, lv in enumerate(levels)), levels
    assert frames[0].image.shape == (120, 160, 3)
    assert all(a.timestamp <= b.timestamp for a, b in zip(frames, frames[1:]))


def test_video_file_cut_in_half_yields_its_first_frames_then_ends(video, tmp_path):
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_source(str(cut)) as src:
        frames = list(src)
        assert src.ended
        assert src.read() is None
        assert src.status == (f"{cut} ended after {len(frames)} of {VIDEO_FRAMES} frames (truncated or "
                              "damaged file; its last, partial frame was left out)")
    assert 0 < len(frames) < VIDEO_FRAMES
    levels = [level(f.image) for f in frames]
    assert all(abs(lv - 10 * i) <= 3 for i, lv in enumerate(levels)), levels


# ---------------------------------------------------------------- opening errors


def test_corrupt_video_file_fails_with_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)))
    with pytest.raises(SourceError) as err:
        open_source(str(bad))
    assert str(err.value) == f"'{bad}' is not a readable video (corrupt or unsupported format)"


@pytest.mark.parametrize("spec, message", [
    ("missing/clip.mp4", "'missing/clip.mp4' does not exist"),
    ("webcam", "unknown source 'webcam': use a camera index (0), a video file, a folder of images, "
               "an http(s):// MJPEG URL or demo"),
    ("rtsp://cam/stream", "unsupported source 'rtsp://cam/stream': use a camera index (0), a video file, "
                          "a folder of images, an http(s):// MJPEG URL or demo"),
])
def test_bad_source_strings_fail_with_one_line(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as err:
        open_source(spec)
    assert str(err.value) == message


def test_empty_folder_fails_with_one_line(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path))
    assert str(err.value) == (f"folder '{tmp_path}' has no images "
                              "(.png, .jpg, .jpeg, .bmp, .webp, .tif, .tiff, .pgm, .ppm)")


def test_camera_that_does_not_exist_fails_with_one_line():
    if Path("/dev/video7").exists():
        pytest.skip("this machine has a /dev/video7")
    with pytest.raises(SourceError) as err:
        open_source("7")
    assert str(err.value) == "camera 7 cannot be opened (no such device)"


def free_port() -> int:
    """A port that nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_that_does_not_answer_fails_fast_with_one_line():
    url = f"http://127.0.0.1:{free_port()}/"
    start = time.perf_counter()
    with pytest.raises(SourceError) as err:
        open_source(url)
    assert time.perf_counter() - start < 5
    assert str(err.value) == f"{url} does not answer (connection refused)"


# ---------------------------------------------------------------- a loopback MJPEG server

BOUNDARY = "123456789000000000000987654321"


def jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


class MjpegHandler(BaseHTTPRequestHandler):
    """Plays ``server.scripts[k]`` on the k-th connection (the last script repeats)."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        with server.lock:
            k = server.connections
            server.connections += 1
        script = server.scripts[min(k, len(server.scripts) - 1)]
        if script == "html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>camera settings</html>")
            return
        if script == "404":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.end_headers()
        try:
            for action, value in script:
                self.wfile.write(self.part(action, value))
                self.wfile.flush()
                if action == "drop_mid_frame":
                    return  # the handler ends: the server closes the connection mid-frame
                if action == "hold":
                    server.stop.wait(10)
                    return
        except OSError:  # the client went away first
            return

    @staticmethod
    def part(action: str, value: int) -> bytes:
        head = f"\r\n--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
        if action == "good":
            body = jpeg(value)
            return (head % len(body)).encode() + body
        if action == "truncated":  # a short JPEG whose length header matches what is sent
            body = jpeg(value)[:300]
            return (head % len(body)).encode() + body
        if action == "garbage_part":
            body = bytes(np.random.default_rng(value).integers(0, 256, 2000, dtype=np.uint8))
            return (head % len(body)).encode() + body
        if action == "garbage_bytes":  # noise between parts, outside any part
            return bytes(np.random.default_rng(value).integers(0, 256, 700, dtype=np.uint8))
        if action == "drop_mid_frame":
            body = jpeg(value)
            return (head % len(body)).encode() + body[: len(body) // 2]
        if action == "hold":
            return b""
        raise ValueError(action)

    def log_message(self, *args: object) -> None:
        pass


class MjpegServer:
    def __init__(self, scripts: list, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), MjpegHandler)
        self.httpd.daemon_threads = True
        self.httpd.scripts = scripts
        self.httpd.connections = 0
        self.httpd.lock = threading.Lock()
        self.httpd.stop = threading.Event()
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def connections(self) -> int:
        return self.httpd.connections

    def stop(self) -> None:
        self.httpd.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def mjpeg_server():
    servers: list[MjpegServer] = []

    def start(scripts: list, port: int = 0) -> MjpegServer:
        servers.append(MjpegServer(scripts, port))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def read_until(src, count: int, deadline_s: float = 10.0, statuses: set | None = None) -> list:
    frames = []
    end = time.monotonic() + deadline_s
    while len(frames) < count and time.monotonic() < end:
        frame = src.read(timeout=0.05)
        if statuses is not None and src.status:
            statuses.add(src.status)
        if frame is not None:
            frames.append(frame)
    return frames


def test_mjpeg_stream_skips_bad_frames_and_reconnects_after_a_drop(mjpeg_server):
    server = mjpeg_server([
        [("good", 10), ("good", 20), ("good", 30), ("truncated", 200), ("garbage_part", 1),
         ("good", 40), ("good", 50), ("drop_mid_frame", 60)],
        [("good", 70), ("good", 80), ("garbage_bytes", 2), ("good", 90), ("good", 100), ("hold", 0)],
    ])
    with open_source(server.url, buffer=100, backoff=(0.05, 0.2)) as src:
        assert src.live
        frames = read_until(src, 9)
        assert [round(level(f.image), -1) for f in frames] == [10, 20, 30, 40, 50, 70, 80, 90, 100]
        assert src.skipped == 3  # the truncated JPEG, the garbage part, the frame cut by the drop
        assert src.reconnects == 1 and server.connections == 2
        assert src.garbage_bytes >= 700
        assert src.read(timeout=0.2) is None  # live: a timeout with no frame is None, not the end
        assert not src.ended and src.status is None
    assert src.ended
    assert [f.index for f in frames] == list(range(9))
    assert all(f.source == server.url for f in frames)


def test_mjpeg_stream_reports_its_loss_and_comes_back(mjpeg_server):
    # A reconnection that reaches the first server before it is gone gets an empty stream.
    server = mjpeg_server([[("good", 10)], []])
    statuses: set[str] = set()

    def wait_for_status(word: str) -> None:
        deadline = time.monotonic() + 5
        while not any(word in s for s in statuses) and time.monotonic() < deadline:
            assert src.read(timeout=0.01) is None
            if src.status:
                statuses.add(src.status)

    with open_source(server.url, backoff=(0.3, 0.6)) as src:
        assert [level(f.image) for f in read_until(src, 1)] == [10]
        wait_for_status("lost")
        server.stop()  # nothing listens any more
        wait_for_status("does not answer")
        revived = mjpeg_server([[("good", 20), ("hold", 0)]], port=server.port)
        frames = read_until(src, 1, statuses=statuses)
        assert [level(f.image) for f in frames] == [20]
        assert src.status is None
        assert revived.connections == 1
    assert f"{server.url} lost (connection closed), reconnecting in 0.3 s" in statuses
    # "reset" when the kernel had queued the attempt on the closing listener
    assert any(re.fullmatch(re.escape(server.url) + r" does not answer \(connection (refused|reset)\), "
                            r"reconnecting in 0\.6 s", s) for s in statuses), statuses


def test_mjpeg_close_unblocks_a_waiting_reader(mjpeg_server):
    server = mjpeg_server([[("hold", 0)]])
    src = open_source(server.url)
    got: list = []
    reader = threading.Thread(target=lambda: got.append(src.read()))
    reader.start()
    time.sleep(0.1)
    start = time.perf_counter()
    src.close()
    reader.join(3)
    assert not reader.is_alive() and got == [None]
    assert time.perf_counter() - start < 2
    assert src.ended and not any(t.name.startswith("vrfer source") for t in threading.enumerate())


@pytest.mark.parametrize("script, message", [
    ("html", "{url} is not an MJPEG stream (text/html; expected multipart/x-mixed-replace)"),
    ("404", "{url} answered HTTP 404 Not Found"),
])
def test_url_that_is_not_an_mjpeg_stream_fails_with_one_line(mjpeg_server, script, message):
    server = mjpeg_server([script])
    with pytest.raises(SourceError) as err:
        open_source(server.url)
    assert str(err.value) == message.format(url=server.url)


# ---------------------------------------------------------------- cameras


def test_camera_that_vanishes_is_reopened_with_backoff(video, tmp_path):
    # No camera here: a capture playing a file ends like an unplugged camera; the
    # second opening fails as if the device were still gone.
    opened: list[int] = []

    def opener() -> cv2.VideoCapture:
        opened.append(1)
        return cv2.VideoCapture(str(video if len(opened) != 2 else tmp_path / "gone.avi"))

    statuses: set[str] = set()
    with CameraSource(0, opener=opener, buffer=1000, backoff=(0.2, 0.4)) as src:
        frames = read_until(src, 2 * VIDEO_FRAMES, statuses=statuses)
        assert src.reconnects == 1
    assert len(frames) == 2 * VIDEO_FRAMES
    assert [round(level(f.image) / 10) for f in frames] == 2 * list(range(VIDEO_FRAMES))
    assert [f.index for f in frames] == list(range(2 * VIDEO_FRAMES))
    assert "camera 0 lost, reconnecting in 0.2 s" in statuses
    assert "camera 0 cannot be opened, reconnecting in 0.4 s" in statuses


# ---------------------------------------------------------------- demo


def test_demo_with_ferplus_is_a_slideshow_of_labelled_test_faces(ferplus_dir):
    with open_source("demo", hold=2, seed=5) as src:
        assert not src.live and not src.synthetic
        frames = [src.read() for _ in range(6)]
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == list(range(6))
    assert all(f.truth in FERPLUS_CLASSES for f in frames)
    assert all((ferplus_dir / "FER2013Test" / f.file).is_file() for f in frames)
    assert frames[0].file == frames[1].file and frames[1].file != frames[2].file  # held for 2 frames
    labels = dict(majority_faces(ferplus_dir))
    assert all(labels[f.file] == f.truth for f in frames)


def test_demo_is_deterministic_for_a_seed(ferplus_dir):
    def first(seed: int) -> list:
        with open_source("demo", seed=seed) as src:
            return [src.read() for _ in range(3)]

    a, b, c = first(1), first(1), first(2)
    assert [f.file for f in a] == [f.file for f in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert [f.file for f in a] != [f.file for f in c]


def test_demo_without_ferplus_is_a_labelled_synthetic_face(tmp_path, monkeypatch):
    monkeypatch.setenv("VRFER_FERPLUS", str(tmp_path))
    with open_source("demo", length=5) as src:
        assert src.synthetic and "SYNTHETIC" in src.name
        frames = list(src)
        assert src.ended
    assert len(frames) == 5
    assert all(f.truth is None and f.image.shape == (480, 640, 3) for f in frames)
    # The caption is drawn in yellow (BGR 0,255,255) across the top of every frame.
    top = frames[0].image[15:50, 20:520].reshape(-1, 3)
    assert np.sum(np.all(top == (0, 255, 255), axis=1)) > 500
    assert SYNTHETIC_TEXT == "SYNTHETIC DEMO - no FER+ data"


def test_demo_pass_shows_every_labelled_test_face_once_then_ends(ferplus_dir):
    with open_source("demo", seed=0) as src:
        files = [f.file for f in src]
        assert src.ended
    assert len(files) == len(set(files)) == len(majority_faces(ferplus_dir)) == 3152
