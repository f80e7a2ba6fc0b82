"""OSC sinks against a real python-osc server on 127.0.0.1: addresses, ranges, rate cap,
change-only sending, full refresh, /avatar/change re-send, away decay and failure handling."""
from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from pythonosc.udp_client import SimpleUDPClient

from vrfer.core.avatar.osc import (PARAM_CONFIDENCE, PARAM_INDEX, PARAM_PRESENT, SinkTiming, VRChatSink, VRCFTSink,
                             parse_target)
from vrfer.core.avatar.shapes import BABBLE
from vrfer.core.avatar.tables import load_table
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ConfigError

V2 = "/avatar/parameters/v2/"
HAPPY = {"happiness": 0.8, "neutral": 0.2}


def as_dict(msgs):
    out = {}
    for address, args in msgs:
        out[address] = args[0]
    return out


def test_vrchat_sink_sends_v2_floats_in_range(osc_listener, state_factory):
    table = load_table("unified_v2")
    with VRChatSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        sink.send(state_factory(HAPPY))
        n = sink.tick(0.0)
        got = as_dict(osc_listener.take(n))
    assert n == len(table.names) + 3 == len(got)
    v2 = {a[len(V2):]: v for a, v in got.items() if a.startswith(V2)}
    assert set(v2) == set(table.names)
    for name, value in v2.items():
        lo, hi = table.shapes.range_of(name)
        assert isinstance(value, float) and lo <= value <= hi, (name, value)
    expected = 0.8 * table.row("happiness") + 0.2 * table.row("neutral")
    for name, w in zip(table.names, expected):
        assert v2[name] == pytest.approx(float(w), abs=1e-6)
    assert v2["MouthSmileLeft"] == pytest.approx(0.72, abs=1e-6)
    assert got[PARAM_INDEX] == FERPLUS_CLASSES.index("happiness")
    assert got[PARAM_CONFIDENCE] == pytest.approx(0.8) and got[PARAM_PRESENT] is True


def test_vrchat_sink_ft_prefix_and_no_discrete(osc_listener, state_factory):
    with VRChatSink("127.0.0.1", osc_listener.port, ft_prefix=True, discrete=False, autostart=False) as sink:
        sink.send(state_factory(HAPPY))
        n = sink.tick(0.0)
        got = as_dict(osc_listener.take(n))
    assert got and all(a.startswith("/avatar/parameters/FT/v2/") for a in got)
    assert got["/avatar/parameters/FT/v2/JawOpen"] == pytest.approx(0.08)


def test_vrchat_sink_sends_only_changed_values(osc_listener, state_factory):
    with VRChatSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        sink.send(state_factory(HAPPY))
        osc_listener.take(sink.tick(0.0))
        assert sink.tick(0.02) == 0  # same state: nothing to say
        assert osc_listener.take(None, settle=0.1) == []
        # shift a little probability to surprise: only shapes in happiness or surprise move
        sink.send(state_factory({"happiness": 0.7, "surprise": 0.1, "neutral": 0.2}))
        n = sink.tick(0.04)
        got = as_dict(osc_listener.take(n))
    table = load_table("unified_v2")
    moved = {n for n, a, b in zip(table.names, table.row("happiness"), table.row("surprise")) if a or b}
    assert n == len(got) > 0
    assert {a[len(V2):] for a in got if a.startswith(V2)} == moved
    assert PARAM_INDEX not in got  # the label stayed "happiness"
    assert got[PARAM_CONFIDENCE] == pytest.approx(0.7)


def test_vrchat_sink_full_refresh_about_once_a_second(osc_listener, state_factory):
    timing = SinkTiming(refresh_s=1.0)
    with VRChatSink("127.0.0.1", osc_listener.port, timing=timing, autostart=False) as sink:
        sink.send(state_factory(HAPPY))
        full = sink.tick(0.0)
        osc_listener.take(full)
        counts = [sink.tick(t) for t in (0.25, 0.5, 0.75, 0.99)]
        refreshed = sink.tick(1.0)
        got = osc_listener.take(refreshed)
        assert sink.tick(1.5) == 0
    assert counts == [0, 0, 0, 0]
    assert refreshed == full == len(got)


def test_vrchat_sink_resends_everything_on_avatar_change(osc_listener, state_factory):
    with VRChatSink("127.0.0.1", osc_listener.port, listen_port=0, autostart=False) as sink:
        assert sink.listen_address is not None
        sink.send(state_factory(HAPPY))
        full = sink.tick(0.0)
        osc_listener.take(full)
        assert sink.tick(0.1) == 0
        vrchat = SimpleUDPClient(*sink.listen_address)  # what VRChat sends on its output port
        vrchat.send_message("/avatar/change", "avtr_00000000-0000-0000-0000-000000000000")
        deadline = time.monotonic() + 2
        while sink.avatar_changes == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sink.avatar_changes == 1
        assert sink.tick(0.2) == full
        assert len(osc_listener.take(full)) == full
        assert sink.tick(0.3) == 0


def test_vrchat_sink_listening_is_off_by_default(osc_listener):
    with VRChatSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        assert sink.listen_address is None


def test_vrchat_sink_listen_port_in_use_warns_once(osc_listener, caplog):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING, logger="vrfer.avatar"):
            with VRChatSink("127.0.0.1", osc_listener.port, listen_port=port, autostart=False) as sink:
                sink.tick(0.0)
                status = sink.status()
    finally:
        busy.close()
    expected = (f"cannot listen for /avatar/change on 127.0.0.1:{port}: "
                "it is in use (VRCFaceTracking owns 9001 while it runs)")
    assert [r.getMessage() for r in caplog.records] == [f"vrchat sink: {expected}"]
    assert status.last_error == expected and status.enabled


def test_vrchat_sink_rate_cap_holds_under_a_flood(osc_listener, state_factory):
    rate = 20.0
    with VRChatSink("127.0.0.1", osc_listener.port, timing=SinkTiming(rate_hz=rate)) as sink:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 0.6:  # the pipeline at far more than 20 Hz, every frame different
            p = 0.5 + 0.4 * ((i % 2) * 2 - 1) * 0.5
            sink.send(state_factory({"happiness": p, "neutral": 1 - p}, index=i))
            i += 1
            time.sleep(0.001)
        elapsed = time.monotonic() - t0
        sink.close()
        msgs = osc_listener.take(None, settle=0.1)
    jaw = [m for m in msgs if m[0] == V2 + "JawOpen"]
    assert i > 5 * rate * elapsed  # the flood really was faster than the cap
    assert 1 <= len(jaw) <= rate * elapsed + 2


def test_sink_decays_to_away_when_face_lost(osc_listener, state_factory):
    timing = SinkTiming(away_tau_s=0.3)
    with VRChatSink("127.0.0.1", osc_listener.port, timing=timing, autostart=False) as sink:
        sink.send(state_factory({"happiness": 1.0}))
        osc_listener.take(sink.tick(0.0))
        assert not sink.status().away
        sink.send(state_factory(face=False))
        smiles = []
        for k in range(1, 31):
            n = sink.tick(0.05 * k)
            got = as_dict(osc_listener.take(n, settle=0.0)) if n else {}
            if k == 1:
                assert got[PARAM_PRESENT] is False and got[PARAM_INDEX] == 0 and got[PARAM_CONFIDENCE] == 0.0
            if V2 + "MouthSmileLeft" in got:
                smiles.append(got[V2 + "MouthSmileLeft"])
        assert sink.status().away
    # relaxes step by step (never frozen, never a snap) and ends at the away pose (0)
    assert len(smiles) >= 10
    assert all(b < a for a, b in zip(smiles, smiles[1:]))
    assert smiles[0] == pytest.approx(0.9 * (2.718281828 ** (-0.05 / 0.3)), rel=1e-3)
    assert smiles[-1] < 0.01


def test_sink_stale_pipeline_counts_as_away(osc_listener, state_factory):
    now = [0.0]
    with VRCFTSink("127.0.0.1", osc_listener.port, autostart=False, clock=lambda: now[0]) as sink:
        sink.send(state_factory({"happiness": 1.0}))
        sink.tick(0.0)
        assert not sink.status().away
        now[0] = 0.9
        sink.tick(0.9)
        assert not sink.status().away
        now[0] = 1.2  # no state for longer than stale_s (1 s): the avatar must not freeze
        sink.tick(1.2)
        assert sink.status().away
    got = as_dict(osc_listener.take(None))
    assert got["/mouthSmileLeft"] < 0.9


def test_vrcft_sink_sends_the_45_babble_addresses(osc_listener, state_factory):
    with VRCFTSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        sink.send(state_factory({"surprise": 1.0}))
        n = sink.tick(0.0)
        got = as_dict(osc_listener.take(n))
    assert n == 45 and set(got) == {"/" + b for b in BABBLE}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in got.values())
    assert got["/jawOpen"] == pytest.approx(0.6) and got["/mouthSmileLeft"] == 0.0


def test_sink_closed_port_warns_once_and_never_raises(state_factory, caplog):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    now = [0.0]
    with caplog.at_level(logging.WARNING, logger="vrfer.avatar"):
        with VRChatSink("127.0.0.1", port, autostart=False, timing=SinkTiming(refresh_s=0.1),
                        clock=lambda: now[0]) as sink:
            for k in range(20):
                now[0] = 0.05 * k
                sink.send(state_factory({"happiness": k / 20, "neutral": 1 - k / 20}))
                sink.tick(now[0])
            status = sink.status()
    expected = f"nothing is listening on 127.0.0.1:{port} (is VRChat running with OSC enabled?)"
    assert [r.getMessage() for r in caplog.records] == [f"vrchat sink: {expected}"]
    assert status.last_error == expected


def test_sink_unknown_host_warns_once_and_never_raises(state_factory, caplog):
    with caplog.at_level(logging.WARNING, logger="vrfer.avatar"):
        with VRCFTSink("no-such-host.invalid", 8888, autostart=False) as sink:
            sink.send(state_factory(HAPPY))
            assert sink.tick(0.0) == 0 and sink.tick(1.5) == 0
            status = sink.status()
    assert [r.getMessage() for r in caplog.records] == [
        "vrcft sink: cannot reach no-such-host.invalid:8888: unknown host name"]
    assert not status.enabled and status.last_error.endswith("unknown host name")


def test_sink_status_reports_rate_and_closes(osc_listener, state_factory):
    sink = VRCFTSink("127.0.0.1", osc_listener.port, timing=SinkTiming(rate_hz=50, refresh_s=0.2))
    sink.send(state_factory(HAPPY))
    deadline = time.monotonic() + 3
    while sink.status().messages_per_s == 0 and time.monotonic() < deadline:
        sink.send(state_factory(HAPPY))  # the pipeline keeps delivering
        time.sleep(0.05)
    status = sink.status()
    sink.close()
    assert status.name == "vrcft" and status.target == f"127.0.0.1:{osc_listener.port}"
    assert status.enabled and status.last_error is None and not status.away
    assert 0 < status.messages_per_s <= 50 * 45
    assert not sink.status().enabled
    assert not any(t.name == "vrfer-vrcft" and t.is_alive() for t in threading.enumerate())


def test_sink_send_returns_while_the_sender_is_busy(osc_listener, state_factory):
    """send() only hands over the state: it must not wait for the sender's lock-free network work."""
    with VRCFTSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        done = threading.Event()
        original = sink.messages

        def slow_messages(*a):  # a sender round that takes long (e.g. a stalled network stack)
            done.wait(2.0)
            return original(*a)

        sink.messages = slow_messages
        sender = threading.Thread(target=sink.tick, args=(0.0,))
        sender.start()
        time.sleep(0.05)
        sink.send(state_factory(HAPPY))  # would deadlock the test if send() waited for the round
        done.set()
        sender.join(2.0)
        assert not sender.is_alive()


@pytest.mark.parametrize("text, default, expected", [
    ("127.0.0.1:9000", 9000, ("127.0.0.1", 9000)),
    ("192.168.1.20", 9000, ("192.168.1.20", 9000)),
    (":9100", 9000, ("127.0.0.1", 9100)),
    ("localhost:8888", 8888, ("localhost", 8888)),
    ("[::1]:9000", 9000, ("::1", 9000)),
])
def test_parse_target_accepts_host_port(text, default, expected):
    assert parse_target(text, default) == expected


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1:vrchat", "OSC target '127.0.0.1:vrchat': port must be a number, as in 127.0.0.1:9000"),
    ("127.0.0.1:70000", "OSC target '127.0.0.1:70000': port 70000 is outside 1..65535"),
])
def test_parse_target_rejects_bad_ports(text, message):
    with pytest.raises(ConfigError) as err:
        parse_target(text, 9000)
    assert str(err.value) == message


def test_sink_presence_gate_sends_away_while_headset_is_off(osc_listener, state_factory):
    in_headset = [True]
    with VRCFTSink("127.0.0.1", osc_listener.port, presence=lambda: in_headset[0], autostart=False,
                   timing=SinkTiming(away_tau_s=0.1)) as sink:
        sink.send(state_factory({"happiness": 1.0}))
        got = as_dict(osc_listener.take(sink.tick(0.0)))
        assert got["/mouthSmileLeft"] == pytest.approx(0.9)
        in_headset[0] = False  # the face is still seen, but the user took the headset off
        for k in range(1, 20):
            sink.send(state_factory({"happiness": 1.0}))
            sink.tick(0.05 * k)
        assert sink.status().away
        got = as_dict(osc_listener.take(None))
    assert got["/mouthSmileLeft"] < 0.01


def test_vrcft_sink_sends_the_models_mouth_shapes_over_udp(osc_listener, state_factory):
    """Babble addresses: jaw and mouth follow the model's shapes from one state to the next;
    the class table still gives the rest (a surprised face's other shapes)."""
    mouth = {"jaw_open": 0.15, "lips_apart": 0.1, "mouth_smile_left": 0.8, "mouth_pucker": 0.3}
    with VRCFTSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        sink.send(state_factory({"surprise": 1.0}, shapes=mouth))
        first = as_dict(osc_listener.take(sink.tick(0.0)))
        sink.send(state_factory({"surprise": 1.0}, shapes={**mouth, "jaw_open": 0.9, "lips_apart": 0.8}))
        second = as_dict(osc_listener.take(sink.tick(0.04)))
    assert first["/jawOpen"] == pytest.approx(0.15) and first["/mouthSmileLeft"] == pytest.approx(0.8)
    assert first["/mouthPucker"] == pytest.approx(0.3)
    assert second["/jawOpen"] == pytest.approx(0.9)  # the mouth opened: only what moved is sent
    assert set(second) == {"/jawOpen", "/mouthClose"}


def test_vrchat_sink_demo_faces_move_the_avatars_jaw_through_a_shapes_model(osc_listener, make_onnx, tiny_meta,
                                                                              ferplus_dir):
    """End to end: the demo's faces, a real ONNX model with a shapes output, the pipeline and the
    VRChat sink to a real OSC listener. The jaw and mouth values the listener gets move from face to face.
    Needs FER+ (``ferplus_dir`` skips with the reason): without it the demo repeats one drawn face."""
    from vrfer.core.face import FaceConfig
    from vrfer.core.mouth_shapes import SHAPES
    from vrfer.core.pipeline import Pipeline, PipelineConfig
    from vrfer.core.smoothing import SmoothingConfig

    model = make_onnx(meta={**tiny_meta, "vrfer.shapes": ",".join(SHAPES)}, shapes=len(SHAPES))
    cfg = PipelineConfig(source="demo", model=model, face=FaceConfig(mode="roi", roi=(0, 0, 640, 480)),
                         smoothing=SmoothingConfig(strength=0.0, margin=0.0), max_frames=8)
    jaws, smiles, model_jaw = [], [], []
    with VRChatSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        def forward(state):
            sink.send(state)
            got = as_dict(osc_listener.take(sink.tick(0.05 * state.frame_index)))
            jaws.append(got.get(V2 + "JawOpen"))
            smiles.append(got.get(V2 + "MouthSmileLeft"))
            model_jaw.append(state.shapes.get("jaw_open"))  # checked below: a subscriber's assert is swallowed

        p = Pipeline(cfg)
        p.subscribe(forward)
        with p:
            assert p.wait(60)
    sent = [j for j in jaws if j is not None]
    assert all(m is not None for m in model_jaw)
    assert all(j == pytest.approx(m, abs=1e-6) for j, m in zip(jaws, model_jaw) if j is not None)
    assert len(jaws) == 8 and len(sent) >= 4 and len(set(sent)) >= 4  # a new jaw value for most frames
    assert len({s for s in smiles if s is not None}) >= 4


def test_shipped_student_moves_the_avatars_mouth_on_demo_faces(osc_listener):
    """The shipped model itself (not a test model): demo faces found by the real face finder, its
    `shapes` output, the VRChat sink and a real UDP listener. Jaw and smile follow the faces."""
    from vrfer.core.model import ExpressionModel
    from vrfer.core.pipeline import Pipeline, PipelineConfig
    from vrfer.core.smoothing import SmoothingConfig

    assert "jaw_open" in ExpressionModel("realtime").shapes  # the shipped student carries the head
    cfg = PipelineConfig(source="demo", smoothing=SmoothingConfig(strength=0.0, margin=0.0), max_frames=12)
    jaws, smiles, model_jaw = [], [], []
    with VRChatSink("127.0.0.1", osc_listener.port, autostart=False) as sink:
        def forward(state):
            sink.send(state)
            got = as_dict(osc_listener.take(sink.tick(0.05 * state.frame_index)))
            if state.face:  # without a face the sink eases towards its away pose, not the model's shapes
                jaws.append(got.get(V2 + "JawOpen"))
                smiles.append(got.get(V2 + "MouthSmileLeft"))
                model_jaw.append(state.shapes["jaw_open"])

        p = Pipeline(cfg)
        p.subscribe(forward)
        with p:
            assert p.wait(60)
    assert len(model_jaw) >= 8  # faces were found and carried shapes
    assert all(j == pytest.approx(m, abs=1e-6) for j, m in zip(jaws, model_jaw) if j is not None)
    assert len({round(j, 4) for j in jaws if j is not None}) >= 6
    assert len({round(s, 4) for s in smiles if s is not None}) >= 6
