"""The pipeline with real parts: onnxruntime (tiny model), real sources (folders, demo, an
MJPEG server on 127.0.0.1), mediapipe where a face must be found or missed."""
from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.errors import ConfigError, ModelError, SourceError
from vrfer.core.face import FaceConfig, roi_geometry
from vrfer.core.model import ExpressionModel
from vrfer.core.pipeline import STATUS_FRAME_INDEX, Pipeline, PipelineConfig
from vrfer.core.preprocess import crop_face, occlude, preprocess
from vrfer.core.smoothing import SmoothingConfig

OFF = SmoothingConfig(strength=0.0, margin=0.0)
STAGES = {"locate", "preprocess", "model", "smooth", "total"}


def noise_folder(folder: Path, n: int, size: tuple[int, int] = (64, 64), seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"img{i:03d}.png" for i in range(n)]
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return names


def roi_config(source: str, model: Path, **kw) -> PipelineConfig:
    return PipelineConfig(source=source, model=model, face=FaceConfig(mode="roi", roi=(0, 0, 64, 64)),
                          smoothing=OFF, **kw)


def run_to_end(cfg: PipelineConfig, *callbacks) -> tuple[list, Pipeline]:
    states: list = []
    p = Pipeline(cfg)
    p.subscribe(states.append)
    for cb in callbacks:
        p.subscribe(cb)
    with p:
        assert p.wait(30), "pipeline did not finish"
    return states, p


def test_pipeline_hands_over_every_folder_frame_in_order(tmp_path, tiny_model):
    names = noise_folder(tmp_path / "imgs", 6)
    states, p = run_to_end(roi_config(str(tmp_path / "imgs"), tiny_model))
    assert [s.frame_index for s in states] == list(range(6))
    assert [s.file for s in states] == names
    assert p.stats.processed == 6 and p.stats.dropped == 0 and p.stats.errors == 0


def test_pipeline_state_is_the_model_output_for_the_preprocessed_crop(tmp_path, tiny_model):
    noise_folder(tmp_path / "imgs", 3)
    states, _ = run_to_end(roi_config(str(tmp_path / "imgs"), tiny_model))
    model = ExpressionModel(tiny_model)
    for s in states:
        image = cv2.imread(str(tmp_path / "imgs" / s.file))
        geometry = roi_geometry(image.shape, (0, 0, 64, 64))
        x = preprocess(image, geometry.transform, model.spec)
        probs, emb = model.predict(x[None])
        assert s.face and s.label == max(s.probs, key=s.probs.get)
        np.testing.assert_allclose(list(s.raw_probs.values()), probs[0], rtol=1e-5)
        np.testing.assert_allclose(list(s.probs.values()), probs[0], rtol=1e-5)  # smoothing off
        np.testing.assert_allclose(s.embedding, emb[0], rtol=1e-5)
        assert s.crop.dtype == np.uint8 and s.crop.shape == (24, 48)
        np.testing.assert_array_equal(s.crop, occlude(crop_face(image, geometry.transform, 48), model.spec))
        assert s.confidence == pytest.approx(s.probs[s.label])


def test_pipeline_reports_each_stage_and_total_latency(tmp_path, tiny_model):
    noise_folder(tmp_path / "imgs", 3)
    states, _ = run_to_end(roi_config(str(tmp_path / "imgs"), tiny_model))
    for s in states:
        assert set(s.timings_ms) == STAGES
        stages = sum(v for k, v in s.timings_ms.items() if k != "total")
        assert s.timings_ms["total"] >= stages  # total runs from the capture timestamp, before them all


def test_pipeline_max_frames_stops_after_that_many(tiny_model):
    cfg = PipelineConfig(source="demo", model=tiny_model, face=FaceConfig(mode="roi", roi=(0, 0, 640, 480)),
                         max_frames=7)
    states, p = run_to_end(cfg)
    assert [s.frame_index for s in states] == list(range(7))
    assert p.stats.processed == 7


def test_pipeline_no_face_means_no_label_and_a_fresh_smoother(tmp_path, tiny_model, ferplus_dir):
    # two real FER+ faces placed in camera-like frames, a blank frame, then the second face again
    folder = tmp_path / "frames"
    folder.mkdir()
    faces = sorted((ferplus_dir / "FER2013Test").glob("*.png"))[:40]
    frames = []
    for path in faces:
        canvas = np.full((480, 640, 3), 90, np.uint8)
        face = cv2.resize(cv2.imread(str(path)), (240, 240), interpolation=cv2.INTER_CUBIC)
        canvas[120:360, 200:440] = face
        frames.append(canvas)
    blank = np.full((480, 640, 3), 90, np.uint8)
    # mediapipe must see the faces: keep the first two it finds
    with __import__("vrfer.core.face", fromlist=["FaceLocator"]).FaceLocator(FaceConfig(tracking=False)) as loc:
        from vrfer.core.types import Frame
        found = [f for f in frames if loc.process(Frame(f, 0, 0.0)) is not None][:2]
    assert len(found) == 2, "mediapipe found fewer than 2 of 40 FER+ faces"
    for i, img in enumerate([found[0], found[1], blank, found[1]]):
        cv2.imwrite(str(folder / f"f{i}.png"), img)
    cfg = PipelineConfig(source=str(folder), model=tiny_model, face=FaceConfig(tracking=False),
                         smoothing=SmoothingConfig(strength=0.9, margin=0.0))
    states, _ = run_to_end(cfg)
    assert [s.face for s in states] == [True, True, False, True]
    gap = states[2]
    assert gap.label is None and gap.confidence == 0.0 and set(gap.probs.values()) == {0.0}
    assert gap.message == "no face found" and gap.crop is None
    assert set(gap.timings_ms) == {"locate", "total"}
    # frame 1 is blended with frame 0; frame 3 follows a gap, so it starts afresh
    assert not np.allclose(list(states[1].probs.values()), list(states[1].raw_probs.values()))
    np.testing.assert_allclose(list(states[3].probs.values()), list(states[3].raw_probs.values()))


def test_pipeline_update_applies_between_frames(tmp_path, tiny_model):
    noise_folder(tmp_path / "imgs", 6, size=(64, 64))
    p = Pipeline(roi_config(str(tmp_path / "imgs"), tiny_model))

    def change_after_frame_2(state):
        if state.frame_index == 2:
            p.update(calibration={"happiness": 3.0}, face=FaceConfig(mode="roi", roi=(8, 8, 32, 32)))
    states: list = []
    p.subscribe(states.append)
    p.subscribe(change_after_frame_2)
    with p:
        assert p.wait(30)
    for s in states:
        raw = np.array(list(s.raw_probs.values()))
        if s.frame_index <= 2:
            expected, box = raw, (0.0, 0.0, 64.0, 64.0)
        else:
            bias = np.zeros(8)
            bias[1] = 3.0  # happiness is class 1
            expected = np.exp(np.log(raw) + bias) / np.exp(np.log(raw) + bias).sum()
            box = (8.0, 8.0, 32.0, 32.0)
        np.testing.assert_allclose(list(s.probs.values()), expected, rtol=1e-5)
        assert s.geometry.box == box


def test_pipeline_update_refuses_settings_that_need_a_restart(tmp_path, tiny_model):
    noise_folder(tmp_path / "imgs", 2)
    with Pipeline(roi_config(str(tmp_path / "imgs"), tiny_model)) as p:
        with pytest.raises(ConfigError) as info:
            p.update(source="demo")
        assert str(info.value) == ("pipeline setting 'source' cannot change while running; "
                                   "stop the pipeline and start a new one")
        with pytest.raises(ConfigError) as info:
            p.update(calibration={"joy": 1.0})
        assert str(info.value) == ("calibration names class 'joy', which the model does not have (neutral, "
                                   "happiness, surprise, sadness, anger, disgust, fear, contempt)")


def test_pipeline_counts_a_failing_frame_and_carries_on(tmp_path, tiny_model, caplog):
    folder = tmp_path / "imgs"
    noise_folder(folder, 4)
    cv2.imwrite(str(folder / "img001.png"), np.zeros((32, 32, 3), np.uint8))  # too small for the ROI
    states, p = run_to_end(roi_config(str(folder), tiny_model))
    assert [s.face for s in states] == [True, False, True, True]
    assert states[1].label is None
    assert states[1].message == "frame 1 failed: face roi (0, 0, 64, 64) does not fit in the 32x32 frame"
    assert p.stats.errors == 1 and p.stats.processed == 4


def test_pipeline_survives_a_broken_subscriber(tmp_path, tiny_model, caplog):
    noise_folder(tmp_path / "imgs", 5)

    def broken(state):
        raise RuntimeError("subscriber bug")
    states, p = run_to_end(roi_config(str(tmp_path / "imgs"), tiny_model), broken)
    assert len(states) == 5
    assert p.stats.subscriber_errors == 5
    assert sum("subscriber bug" in r.getMessage() for r in caplog.records) == 1  # reported once


def test_pipeline_unsubscribe_stops_delivery(tmp_path, tiny_model):
    noise_folder(tmp_path / "imgs", 5)
    p = Pipeline(roi_config(str(tmp_path / "imgs"), tiny_model))
    early: list = []
    unsubscribe = p.subscribe(early.append)
    p.subscribe(lambda s: unsubscribe() if s.frame_index == 1 else None)
    with p:
        assert p.wait(30)
    assert [s.frame_index for s in early] == [0, 1]


def test_pipeline_start_errors_leave_no_threads(tmp_path, tiny_model):
    before = set(threading.enumerate())
    with pytest.raises(ModelError):
        Pipeline(PipelineConfig(source="demo", model=tmp_path / "none.onnx")).start()
    with pytest.raises(SourceError):
        Pipeline(PipelineConfig(source=str(tmp_path / "nothing.mp4"), model=tiny_model)).start()
    assert set(threading.enumerate()) == before


def test_pipeline_stop_leaves_no_threads(tiny_model):
    before = set(threading.enumerate())
    seen = threading.Event()
    p = Pipeline(PipelineConfig(source="demo", realtime=True, model=tiny_model,
                                face=FaceConfig(mode="roi", roi=(0, 0, 640, 480))))
    p.subscribe(lambda s: seen.set())
    p.start()
    assert seen.wait(10)
    assert p.stop(timeout=5)
    assert set(threading.enumerate()) == before
    assert not p.running


# --- a live source: an MJPEG server on 127.0.0.1 -------------------------------------------

class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    jpegs: list[bytes] = []
    fps = 200.0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while not self.server.stopping.is_set():
                body = self.jpegs[i % len(self.jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body + b"\r\n")
                i += 1
                time.sleep(1.0 / self.fps)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mjpeg_url():
    rng = np.random.default_rng(0)
    _MjpegHandler.jpegs = [cv2.imencode(".jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
                           for _ in range(4)]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
    server.daemon_threads = True
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, name="test-mjpeg-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stream", server
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def _own_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request" not in t.name}


def test_pipeline_live_source_keeps_only_the_newest_frame(mjpeg_url, tiny_model):
    url, _ = mjpeg_url
    before = _own_threads()
    states: list = []

    def slow(state):  # a subscriber slower than the 200 fps stream makes frames go stale
        states.append(state)
        time.sleep(0.05)
    p = Pipeline(roi_config(url, tiny_model, max_frames=8))
    p.subscribe(slow)
    with p:
        assert p.wait(30)
        stats = p.stats
    indices = [s.frame_index for s in states]
    assert len(indices) == 8 and indices == sorted(set(indices))
    # ~10 frames arrive during each 50 ms callback; all but the newest go stale
    assert stats.dropped >= stats.processed
    assert stats.captured - stats.processed - stats.dropped in (0, 1)  # at most one frame waiting
    assert all(s.face for s in states)
    assert _own_threads() == before


def test_pipeline_says_when_a_live_source_is_lost(mjpeg_url, tiny_model):
    url, server = mjpeg_url
    messages: list[str] = []
    got_frame = threading.Event()
    lost = threading.Event()

    def watch(state):
        if state.frame_index == STATUS_FRAME_INDEX:
            messages.append(state.message)
            lost.set()
        else:
            got_frame.set()
    with Pipeline(roi_config(url, tiny_model)) as p:
        p.subscribe(watch)
        assert got_frame.wait(10)
        server.stopping.set()  # the stream ends mid-run: the source reconnects in the background
        server.shutdown()
        assert lost.wait(15), "no status state after the stream ended"
        assert p.running
    assert messages and all(m for m in messages)
    assert "reconnect" in messages[0]


def test_pipeline_carries_the_models_mouth_shapes_smoothed(tmp_path, make_onnx, tiny_meta):
    """A model with a shapes output: each state carries them, the first as predicted, later ones
    One-Euro smoothed (moved towards, not onto, the frame's own values)."""
    names = "jaw_open,lips_apart,mouth_smile_left,mouth_smile_right"
    model_path = make_onnx(meta={**tiny_meta, "vrfer.shapes": names}, shapes=4)
    noise_folder(tmp_path / "imgs", 4)
    cfg = roi_config(str(tmp_path / "imgs"), model_path)
    states, _ = run_to_end(cfg)  # smoothing off: the model's own shapes
    model = ExpressionModel(model_path)
    raw = []
    for s in states:
        image = cv2.imread(str(tmp_path / "imgs" / s.file))
        x = preprocess(image, roi_geometry(image.shape, (0, 0, 64, 64)).transform, model.spec)
        raw.append(model.predict_all(x[None]).shapes[0])
        assert list(s.shapes) == names.split(",")
        np.testing.assert_allclose(list(s.shapes.values()), raw[-1], rtol=1e-5)
    smooth_cfg = PipelineConfig(source=str(tmp_path / "imgs"), model=model_path,
                                face=FaceConfig(mode="roi", roi=(0, 0, 64, 64)),
                                smoothing=SmoothingConfig(strength=0.9, margin=0.0))
    smoothed, _ = run_to_end(smooth_cfg)
    np.testing.assert_allclose(list(smoothed[0].shapes.values()), raw[0], rtol=1e-5)
    later = np.array(list(smoothed[1].shapes.values()))
    assert not np.allclose(later, raw[1]) and np.all(np.abs(later - raw[1]) <= np.abs(raw[0] - raw[1]) + 1e-9)


def test_pipeline_without_shapes_in_the_model_sends_none(tmp_path, tiny_model):
    noise_folder(tmp_path / "imgs", 2)
    states, _ = run_to_end(roi_config(str(tmp_path / "imgs"), tiny_model))
    assert all(s.shapes == {} for s in states)
