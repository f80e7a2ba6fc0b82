"""The face-free benchmark family: seven kinds, repeatable, and two sides that never share material."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vrfer.core.facefree import KINDS, SPLITS, _TextureBank, face_free_frames


def test_every_kind_is_drawn_as_a_camera_frame(tmp_path: Path) -> None:
    frames = list(face_free_frames(2, root=tmp_path))  # no FER+ here: posters use procedural texture
    assert [f.kind for f in frames] == list(KINDS) * 2
    assert [f.index for f in frames] == [0] * len(KINDS) + [1] * len(KINDS)
    for f in frames:
        assert f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 and f.split == "bench"
        assert f.image.std() > 1.0  # something in view, not a flat fill
    dim = [f.image.mean() for f in frames if f.kind == "low_light"]
    rooms = [f.image.mean() for f in frames if f.kind == "empty_room"]
    assert max(dim) < min(rooms)


def test_frames_repeat_per_seed_and_the_two_sides_differ(tmp_path: Path) -> None:
    def images(**kw):
        return [f.image for f in face_free_frames(1, root=tmp_path, **kw)]

    assert all(np.array_equal(a, b) for a, b in zip(images(), images()))
    assert not any(np.array_equal(a, b) for a, b in zip(images(), images(split="train")))
    assert not any(np.array_equal(a, b) for a, b in zip(images(), images(seed=1)))


def test_poster_texture_comes_from_the_side_s_own_split(ferplus_dir: Path) -> None:
    for split, folder in SPLITS.items():
        bank = _TextureBank(ferplus_dir, folder, np.random.default_rng(0))
        assert bank.available and {p.parent.name for p in bank._files} == {folder}
    assert SPLITS["bench"] == "FER2013Test" and SPLITS["train"] == "FER2013Train"


@pytest.mark.parametrize("kw, message", [({"split": "valid"}, "face-free split must be one of bench, train"),
                                         ({"kinds": ["kitchen"]}, "unknown face-free kind 'kitchen'")])
def test_bad_arguments_are_one_line_errors(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next(face_free_frames(1, **kw))


def test_training_code_never_asks_for_the_benchmark_side() -> None:
    """The benchmark family is kept out of training: every call in training/ names the train side."""
    import re

    training = Path(__file__).resolve().parents[2] / "training"
    calls = []
    for path in training.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        calls += [(path.name, m.group(0)) for m in re.finditer(r"face_free_frames\([^)]*\)", text)]
    assert calls, "the presence script should use the train side"
    assert all('split="train"' in call for _, call in calls), calls
