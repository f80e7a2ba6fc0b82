"""Fault: an MJPEG camera (a loopback HTTP server) that sends truncated and corrupted JPEGs and
drops the connection mid-frame. The whole pipeline must keep running, reconnect, say so in
a status state, and carry on with the frames that come after."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from vrfer.core.face import FaceConfig
from vrfer.core.pipeline import STATUS_FRAME_INDEX, Pipeline, PipelineConfig
from vrfer.core.smoothing import SmoothingConfig

BOUNDARY = "frame"
# One script per connection: (kind, grey level). The server paces parts 30 ms apart.
SCRIPTS = [
    [("good", 40), ("truncated", 0), ("good", 80), ("corrupt", 0), ("good", 120), ("drop_mid_frame", 0)],
    [("good", 160), ("corrupt", 0), ("good", 200), ("hold", 0)],
]
GOOD_AFTER_DROP = {160, 200}


def jpeg(level: int) -> bytes:
    return cv2.imencode(".jpg", np.full((64, 64, 3), level, np.uint8))[1].tobytes()


def body(kind: str, level: int) -> bytes:
    data = jpeg(level or 100)
    if kind == "truncated":
        return data[:300]  # cut short, but the part's length header matches: the JPEG itself is bad
    if kind == "corrupt":  # the header tables overwritten: no decoder can read it
        return data[:2] + bytes(np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8)) + data[202:]
    return data


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        with server.lock:
            script = server.scripts[min(server.connections, len(server.scripts) - 1)]
            server.connections += 1
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.end_headers()
        try:
            for kind, level in script:
                if kind == "hold":
                    server.done.wait(20)
                    return
                data = body(kind, level)
                head = f"\r\n--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                if kind == "drop_mid_frame":
                    self.wfile.write(head.encode() + data[: len(data) // 2])
                    self.wfile.flush()
                    return  # the connection closes in the middle of a JPEG
                self.wfile.write(head.encode() + data)
                self.wfile.flush()
                time.sleep(0.03)
        except OSError:
            return

    def log_message(self, *args: object) -> None:
        pass


def test_pipeline_survives_bad_jpegs_and_a_mid_frame_drop(tiny_model):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.scripts, httpd.connections, httpd.lock, httpd.done = SCRIPTS, 0, threading.Lock(), threading.Event()
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/stream"
    levels: list[int] = []
    messages: list[str] = []
    back = threading.Event()

    def watch(state) -> None:
        if state.message:
            messages.append(state.message)
        if state.frame_index == STATUS_FRAME_INDEX:
            return
        levels.append(int(round(float(state.crop.mean()))))
        if levels[-1] in GOOD_AFTER_DROP:
            back.set()

    cfg = PipelineConfig(source=url, model=tiny_model, face=FaceConfig(mode="roi", roi=(0, 0, 64, 64)),
                         smoothing=SmoothingConfig(strength=0.0, margin=0.0),
                         source_options={"buffer": 10, "backoff": (0.3, 0.6)})
    pipeline = Pipeline(cfg)
    pipeline.subscribe(watch)
    try:
        pipeline.start()
        assert back.wait(15), f"no frame after the reconnection; got {levels}, messages {messages}"
        time.sleep(0.3)  # the last good frame, if it is still on its way
        assert pipeline.running
        stats = pipeline.stats
    finally:
        httpd.done.set()
        stopped = pipeline.stop()
        httpd.shutdown()
        httpd.server_close()
    assert stopped, "a pipeline thread outlived stop()"
    # Only decodable frames reach the model, in order; the bad ones never became results.
    assert levels == sorted(levels) and set(levels) <= {40, 80, 120, 160, 200}
    assert set(levels) & GOOD_AFTER_DROP
    assert stats.errors == 0 and httpd.connections >= 2
    assert any(m and m.startswith(f"{url} lost") and "reconnecting" in m for m in messages), messages
