"""Blendshape tables: the shipped files load, blend continuously, and bad edits fail in one line."""
from __future__ import annotations

import numpy as np
import pytest

from vrfer.core.avatar.shapes import ARKIT_52, BABBLE, FB_FACE2, SHAPE_SETS
from vrfer.core.avatar.tables import TABLE_DIR, load_table, table_path
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ConfigError


def test_shapes_protocol_sizes():
    assert (len(BABBLE), len(ARKIT_52), len(FB_FACE2)) == (45, 52, 70)
    for names in (BABBLE, ARKIT_52, FB_FACE2, SHAPE_SETS["unified_v2"].names):
        assert len(set(names)) == len(names)


def test_shapes_fb_order_matches_openxr_enum():
    xr = pytest.importorskip("xr", reason="pyopenxr not installed")
    assert FB_FACE2 == tuple(xr.FaceExpression2FB(i).name for i in range(int(xr.FaceExpression2FB.COUNT)))


@pytest.mark.parametrize("key", sorted(SHAPE_SETS))
def test_load_table_shipped_tables_are_valid(key):
    table = load_table(key, TABLE_DIR / f"{key}.toml")
    assert table.matrix.shape == (len(FERPLUS_CLASSES), len(table.names))
    assert not table.row("neutral").any(), "the shipped neutral face is the rest pose"
    for cls in FERPLUS_CLASSES[1:]:
        assert table.row(cls).any(), f"{key}: {cls} moves nothing"
    # every class looks different from every other class
    rows = {tuple(np.round(table.row(c), 4)) for c in FERPLUS_CLASSES}
    assert len(rows) == len(FERPLUS_CLASSES)


def test_load_table_dense_tables_cover_the_whole_protocol():
    assert load_table("babble").names == BABBLE
    assert load_table("fb_face_tracking2").names == FB_FACE2
    assert load_table("arkit52").names == ARKIT_52
    v2 = load_table("unified_v2")  # sparse: only what the table uses is sent
    assert "MouthSmileLeft" in v2.names and "TongueOut" not in v2.names


def test_blend_is_probability_weighted_and_continuous():
    t = load_table("babble")
    happy, sad = t.row("happiness"), t.row("sadness")
    np.testing.assert_allclose(t.blend({"happiness": 1.0}), happy, atol=1e-6)
    np.testing.assert_allclose(t.blend({"happiness": 0.25, "sadness": 0.75}), 0.25 * happy + 0.75 * sad, atol=1e-6)
    # unnormalised input is renormalised; small probability changes give small output changes
    np.testing.assert_allclose(t.blend({"happiness": 2.0, "sadness": 6.0}), 0.25 * happy + 0.75 * sad, atol=1e-6)
    a = t.blend({"happiness": 0.50, "neutral": 0.50})
    b = t.blend({"happiness": 0.51, "neutral": 0.49})
    assert 0 < np.abs(a - b).max() <= 0.01


def test_blend_without_probabilities_is_away():
    t = load_table("unified_v2")
    np.testing.assert_array_equal(t.blend({}), t.away)
    np.testing.assert_array_equal(t.blend({c: 0.0 for c in FERPLUS_CLASSES}), t.away)


def _write(tmp_path, body: str, key: str = "babble"):
    sections = "".join(f"[{c}]\n" for c in FERPLUS_CLASSES if f"[{c}]" not in body)
    path = tmp_path / f"{key}.toml"
    path.write_text(body + "\n" + sections)
    return path


def test_load_table_away_defaults_to_neutral(tmp_path):
    path = _write(tmp_path, "[neutral]\nmouthClose = 0.2\n")
    t = load_table("babble", path)
    assert t.away[BABBLE.index("mouthClose")] == pytest.approx(0.2)
    path = _write(tmp_path, "[neutral]\nmouthClose = 0.2\n[away]\njawOpen = 0.1\n")
    t = load_table("babble", path)
    assert t.away[BABBLE.index("jawOpen")] == pytest.approx(0.1) and t.away[BABBLE.index("mouthClose")] == 0


def test_load_table_signed_names_accept_negative_weights(tmp_path):
    path = _write(tmp_path, "[sadness]\nSmileSadLeft = -0.7\nJawOpen = 0.0\n", key="unified_v2")
    t = load_table("unified_v2", path)
    assert t.row("sadness")[t.names.index("SmileSadLeft")] == pytest.approx(-0.7)


@pytest.mark.parametrize("key, body, message", [
    ("babble", "[happiness]\nmouthSmile = 0.5\n", "happiness.mouthSmile is not a Babble name"),
    ("unified_v2", "[happiness]\nMouthSmileLft = 0.5\n", "happiness.MouthSmileLft is not a Unified Expressions v2 name"),
    ("fb_face_tracking2", "[anger]\nBROW_LOWERER = 1\n", "anger.BROW_LOWERER is not a XR_FB_face_tracking2 name"),
    ("arkit52", "[fear]\nbrowInnerUp = 1.5\n", "fear.browInnerUp = 1.5 is out of range [0, 1]"),
    ("unified_v2", "[sadness]\nJawOpen = -0.2\n", "sadness.JawOpen = -0.2 is out of range [0, 1]"),
    ("unified_v2", "[sadness]\nSmileSadLeft = -1.5\n", "sadness.SmileSadLeft = -1.5 is out of range [-1, 1]"),
    ("babble", "[happiness]\njawOpen = 'wide'\n", "happiness.jawOpen must be a number, got 'wide'"),
    ("babble", "[happiness]\njawOpen = true\n", "happiness.jawOpen must be a number, got True"),
    ("babble", "[happiness]\njawOpen = nan\n", "happiness.jawOpen must be a number, got nan"),
    ("babble", "[happy]\njawOpen = 0.5\n",
     "[happy] is not a FER+ class or 'away' (expected one of neutral, happiness, surprise, sadness, "
     "anger, disgust, fear, contempt, away)"),
    ("babble", "jawOpen = 0.5\n", "jawOpen must be inside a [class] section"),
])
def test_load_table_rejects_bad_entries_with_one_line(tmp_path, key, body, message):
    path = _write(tmp_path, body, key)
    with pytest.raises(ConfigError) as err:
        load_table(key, path)
    assert str(err.value) == f"{path}: {message}"


def test_load_table_missing_section(tmp_path):
    path = tmp_path / "babble.toml"
    path.write_text("[neutral]\n[happiness]\n")
    with pytest.raises(ConfigError) as err:
        load_table("babble", path)
    assert str(err.value) == f"{path}: missing section [surprise] (every FER+ class needs one, even if empty)"


def test_load_table_invalid_toml_and_missing_file(tmp_path):
    path = tmp_path / "babble.toml"
    path.write_text("[neutral\n")
    with pytest.raises(ConfigError) as err:
        load_table("babble", path)
    assert str(err.value).startswith(f"{path}: not valid TOML: ") and "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_table("babble", tmp_path / "nope.toml")
    assert str(err.value) == f"{tmp_path / 'nope.toml'}: blendshape table not found"
    with pytest.raises(ConfigError) as err:
        load_table("visemes")
    assert str(err.value) == "unknown blendshape table 'visemes'; known: unified_v2, babble, arkit52, fb_face_tracking2"


def test_table_path_prefers_user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VRFER_BLENDSHAPES", str(tmp_path))
    assert table_path("babble") == TABLE_DIR / "babble.toml"
    own = _write(tmp_path, "[happiness]\njawOpen = 0.5\n")
    assert table_path("babble") == own
    assert load_table("babble").row("happiness")[BABBLE.index("jawOpen")] == pytest.approx(0.5)


MOUTH = {"jaw_open": 0.7, "lips_apart": 0.6, "mouth_smile_left": 0.9, "mouth_smile_right": 0.1,
         "mouth_frown_left": 0.0, "mouth_frown_right": 0.3, "mouth_stretch_left": 0.2, "mouth_stretch_right": 0.2,
         "mouth_pucker": 0.0, "mouth_funnel": 0.4, "mouth_left": 0.5, "mouth_right": 0.0,
         "mouth_lower_down": 0.25, "mouth_upper_up": 0.15}


@pytest.mark.parametrize("key, jaw, smile_left, brow", [
    ("unified_v2", "JawOpen", "MouthSmileLeft", "BrowInnerUpLeft"),
    ("babble", "jawOpen", "mouthSmileLeft", None),
    ("arkit52", "jawOpen", "mouthSmileLeft", "browInnerUp"),
    ("fb_face_tracking2", "JAW_DROP", "LIP_CORNER_PULLER_L", "INNER_BROW_RAISER_L"),
])
def test_mouth_shapes_drive_mouth_and_jaw_and_the_class_table_the_rest(key, jaw, smile_left, brow):
    t = load_table(key)
    assert t.mouth is not None
    probs = {"surprise": 0.6, "neutral": 0.4}
    plain = t.blend(probs)
    w = dict(zip(t.names, t.blend(probs, MOUTH)))
    assert w[jaw] == pytest.approx(0.7) and w[smile_left] == pytest.approx(0.9)
    mapped = {t.names[i] for i in t.mouth.index}
    for j, name in enumerate(t.names):  # every other name keeps the class blend: the expression stays
        if name not in mapped:
            assert w[name] == pytest.approx(float(plain[j]), abs=1e-6), name
    if brow is not None:
        assert brow not in mapped
    np.testing.assert_array_equal(t.blend(probs, {}), plain)  # a model without shapes: tables alone
    np.testing.assert_array_equal(t.blend({}, MOUTH), t.away)  # no face: away, whatever the shapes say


def test_mouth_map_signed_and_combined_names_are_clipped_to_their_range():
    t = load_table("unified_v2")
    w = dict(zip(t.names, t.blend({"neutral": 1.0}, MOUTH)))
    assert w["SmileFrownRight"] == pytest.approx(0.1 - 0.3)  # signed: smile minus frown
    assert w["MouthX"] == pytest.approx(-0.5)  # towards the user's left
    assert w["MouthClosed"] == pytest.approx(0.1)  # jaw open, lips together
    w = dict(zip(t.names, t.blend({"neutral": 1.0}, {**MOUTH, "lips_apart": 1.0})))
    assert w["MouthClosed"] == 0.0  # 0.7 - 1.0 clipped to the name's range


def test_mouth_map_keeps_the_table_for_shapes_the_model_lacks():
    t = load_table("babble")
    plain = dict(zip(t.names, t.blend({"happiness": 1.0})))
    w = dict(zip(t.names, t.blend({"happiness": 1.0}, {"jaw_open": 0.5})))
    assert w["jawOpen"] == 0.5 and w["mouthSmileLeft"] == pytest.approx(plain["mouthSmileLeft"])


@pytest.mark.parametrize("body, message", [
    ("[babble]\njawOpne = 'jaw_open'\n", "babble.jawOpne is not a Babble name"),
    ("[babble]\njawOpen = 'jaw_opn'\n", "babble.jawOpen: 'jaw_opn' is not a mouth shape (known: jaw_open,"),
    ("[babble]\njawOpen = { jaw_open = 'x' }\n", "babble.jawOpen.jaw_open must be a number, got 'x'"),
    ("[babble]\njawOpen = 3\n", "babble.jawOpen must be a shape name or { shape = coefficient, ... }"),
    ("[babel]\njawOpen = 'jaw_open'\n", "[babel] is not a protocol (expected one of unified_v2, babble,"),
    ("[babble\n", "not valid TOML"),
])
def test_mouth_map_rejects_bad_entries_with_one_line(tmp_path, body, message):
    path = tmp_path / "mouth.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_table("babble", mouth=path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)
