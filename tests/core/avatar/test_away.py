"""The user walks away: real face-free frames through the whole pipeline drive a real OSC
listener to the away pose with FacePresent = false (docs/avatar.md, "Behaviour shared by the sinks")."""
from __future__ import annotations

import time
from pathlib import Path

import cv2

from vrfer.core.avatar.osc import PARAM_INDEX, PARAM_PRESENT, SinkTiming, VRChatSink
from vrfer.bench.runtime import camera_like_frames
from vrfer.core.face import FaceConfig
from vrfer.core.facefree import face_free_frames
from vrfer.core.pipeline import Pipeline, PipelineConfig
from vrfer.core.ferplus import majority_faces


def test_face_free_frames_drive_the_avatar_to_the_away_pose(ferplus_dir: Path, tmp_path: Path, osc_listener) -> None:
    folder = tmp_path / "walk_away"
    folder.mkdir()
    happy = [f for f in majority_faces(ferplus_dir) if f[1] == "happiness"][:8]
    for i, cf in enumerate(camera_like_frames(happy, ferplus_dir / "FER2013Test", seed=4)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cf.image)
    # Then nobody: the kinds that fooled the finder before it scored presence.
    kinds = ("low_light", "poster", "headset_on_desk", "hands")
    for i, f in enumerate(face_free_frames(6, kinds=kinds, root=ferplus_dir)):
        cv2.imwrite(str(folder / f"{100 + i:03d}.png"), f.image)

    states = []
    # stale_s far beyond the run: the away pose must come from the face-free frames, not from silence.
    sink = VRChatSink("127.0.0.1", osc_listener.port, timing=SinkTiming(stale_s=600.0))
    pipeline = Pipeline(PipelineConfig(source=str(folder), realtime=True, face=FaceConfig(tracking=False),
                                       source_options={"fps": 15}))
    pipeline.subscribe(sink.send)
    pipeline.subscribe(states.append)
    try:
        with pipeline:
            assert pipeline.wait(120)
        time.sleep(3.0)  # > 8 time constants (0.35 s) of the decay after the last frame
        messages = osc_listener.take()
        away = dict(zip(sink._addresses, map(float, sink.table.away)))
    finally:
        sink.close()

    frames = [s for s in states if s.frame_index >= 0]
    assert len(frames) == 8 + 6 * len(kinds)
    assert sum(s.face for s in frames[:8]) >= 6  # the faces were seen ...
    # The false-face rate is vrfer bench's figure (about 1% on these hard kinds; which paths the
    # time-bounded search reaches varies with the machine's load, so a stray second one has been
    # seen at load 15); here the avatar must end up away once the face-free frames outlast them.
    false = [(s.file, s.geometry.path) for s in frames[8:] if s.face]
    assert len(false) <= 2 and not any(s.face for s in frames[-2:]), false
    present = [args[0] for address, args in messages if address == PARAM_PRESENT]
    assert True in present and present[-1] is False  # ... then FacePresent went false and stayed so
    assert [args[0] for address, args in messages if address == PARAM_INDEX][-1] == 0
    last = {address: args[0] for address, args in messages}
    off = {a: abs(last[a] - v) for a, v in away.items() if a in last}
    worst = max(off, key=off.get)
    assert off and off[worst] < 0.02, (worst, [args[0] for a, args in messages if a == worst][-12:], away[worst])
