"""Fuzz: the readers of files users share or edit by hand (settings, profiles, blendshape tables,
training configs, FER+ and AffectNet lists, class folders).

Properties: a reader returns a valid object or raises its documented one-line error
(ConfigError, DatasetError), never anything else and never a hang; well-formed input loses
nothing on the way through."""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from fuzzkit import JSON, deep, within
from hypothesis import given
from hypothesis import strategies as st

from vrfer.app.settings import (AVATAR_OUTPUTS, FILE_NAME, Avatar, Settings, Smoothing, load_settings,
                                save_settings, settings_from_dict, settings_to_dict)
from vrfer.core.adapt import ModelFingerprint, Profile, load_profile, save_profile
from vrfer.core.avatar.shapes import SHAPE_SETS
from vrfer.core.avatar.tables import AWAY, BlendTable, load_table
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ConfigError, DatasetError
from vrfer.core.smoothing import METHODS
from vrfer.training.config import TrainConfig
from vrfer.training.datasets import (AFFECTNET_COLUMNS, N_VOTE_COLUMNS, load_affectnet, load_class_folders,
                                     load_ferplus_csv, read_label_csv)


def _one_line(err: Exception) -> None:
    assert str(err) and "\n" not in str(err)


# --- settings (JSON) ----------------------------------------------------------------------

def _mutated(doc: dict, path: list[str], value) -> dict:
    """``doc`` with the value at ``path`` (keys, possibly new) replaced."""
    out = json.loads(json.dumps(doc))
    node = out
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return out


SETTINGS_PATHS = st.sampled_from([
    ["source"], ["model"], ["profile"], ["calibration"], ["calibration", "happiness"], ["mouth_camera"],
    ["mouth_camera", "roi"], ["mouth_camera", "rotate"], ["mouth_camera", "enabled"], ["smoothing", "strength"],
    ["smoothing", "min_hold_frames"], ["smoothing", "method"], ["avatar", "output"], ["overlay", "x"],
    ["overlay", "opacity"], ["version"], ["format"], ["unknown"]])


@given(path=SETTINGS_PATHS, value=JSON)
def test_settings_from_any_json_is_settings_or_config_error(path, value):
    doc = _mutated(settings_to_dict(Settings()), path, value)
    try:
        s = settings_from_dict(doc)
    except ConfigError as err:
        _one_line(err)
        return
    assert isinstance(s, Settings)
    assert math.isfinite(s.smoothing.strength) and 0 <= s.overlay.opacity <= 1


@given(raw=st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()),
                     st.integers(1, 5000).map(lambda n: deep(n).encode())))
def test_load_settings_never_raises_and_repairs(tmp_path, raw):
    (tmp_path / FILE_NAME).write_bytes(raw)
    with within(5.0):
        loaded = load_settings(tmp_path)
    assert isinstance(loaded.settings, Settings)
    if loaded.notice is not None:  # a bad file was replaced by defaults that read back
        _one_line(ValueError(loaded.notice))
        assert load_settings(tmp_path).notice is None


@given(source=st.text(max_size=30), strength=st.floats(0, 1), hold=st.integers(1, 10**6),
       method=st.sampled_from(METHODS), output=st.sampled_from(AVATAR_OUTPUTS),
       calibration=st.dictionaries(st.sampled_from(FERPLUS_CLASSES), st.floats(-50, 50), max_size=8))
def test_good_settings_round_trip_exactly(tmp_path, source, strength, hold, method, output, calibration):
    s = Settings(source=source, smoothing=Smoothing(method=method, strength=strength, min_hold_frames=hold),
                 avatar=Avatar(output=output), calibration=calibration)
    save_settings(s, tmp_path / FILE_NAME)
    loaded = load_settings(tmp_path)
    assert loaded.notice is None and loaded.settings == s


# --- profiles (JSON) ----------------------------------------------------------------------

def _profile(k: int = 3, d: int = 4, seed: int = 0) -> Profile:
    rng = np.random.default_rng(seed)
    fp = ModelFingerprint("ab" * 32, FERPLUS_CLASSES[:k], d, "tiny")
    return Profile(fp, rng.normal(size=(k, d)), rng.normal(size=k), {FERPLUS_CLASSES[0]: 5}, 3.0, "now", "me")


PROFILE_PATHS = st.sampled_from([
    ["model"], ["model", "sha256"], ["model", "classes"], ["model", "embedding_dim"], ["weights"], ["bias"],
    ["samples"], ["samples", "neutral"], ["l2"], ["version"], ["format"], ["name"], ["created"]])


@given(path=PROFILE_PATHS, value=st.one_of(JSON, st.just(float("inf")), st.just(10**400)))
def test_profile_from_any_json_is_a_profile_or_config_error(tmp_path, path, value):
    where = save_profile(_profile(), tmp_path / "p.json")
    doc = _mutated(json.loads(where.read_text()), path, value)
    where.write_text(json.dumps(doc))
    try:
        prof = load_profile(where)
    except ConfigError as err:
        _one_line(err)
        return
    k, d = len(prof.model.classes), prof.model.embedding_dim
    assert prof.weights.shape == (k, d) and np.isfinite(prof.weights).all()


@given(raw=st.one_of(st.binary(max_size=300), st.integers(1, 5000).map(lambda n: deep(n).encode())))
def test_profile_from_any_bytes_is_config_error(tmp_path, raw):
    where = tmp_path / "p.json"
    where.write_bytes(raw)
    with pytest.raises(ConfigError) as err, within(5.0):
        load_profile(where)
    _one_line(err.value)


@given(k=st.integers(2, 8), d=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_good_profiles_round_trip_exactly(tmp_path, k, d, seed):
    prof = _profile(k, d, seed)
    back = load_profile(save_profile(prof, tmp_path / "p.json"))
    np.testing.assert_array_equal(back.weights, prof.weights)
    np.testing.assert_array_equal(back.bias, prof.bias)
    assert (back.model, back.samples, back.l2) == (prof.model, prof.samples, prof.l2)


# --- TOML: blendshape tables and training configs -----------------------------------------

TOML_VALUES = st.one_of(
    st.integers(-10**30, 10**30).map(str), st.floats().map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e999", "true", "false", '""', '"x"', "[]", "[1, 2]", "{}",
                     "{a = 1}", "0.5", "-0.5", "1", "0", "2.0", "1979-05-27"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'), max_size=10)
    .map(lambda t: json.dumps(t)),
    st.integers(1, 3000).map(deep),
)


def _toml(sections: list[str], keys: list[str]) -> st.SearchStrategy[str]:
    line = st.tuples(st.sampled_from(keys) | st.from_regex(r"[a-z_]{1,8}", fullmatch=True), TOML_VALUES) \
        .map(lambda kv: f"{kv[0]} = {kv[1]}")
    header = st.sampled_from(sections).map(lambda s: f"[{s}]")
    return st.one_of(st.lists(st.one_of(line, header), max_size=15).map("\n".join), st.text(max_size=200))


TABLE = SHAPE_SETS["unified_v2"]
TABLE_TOML = _toml([*FERPLUS_CLASSES, AWAY, "nope"], list(TABLE.names[:6]) + ["MouthSmile"])


@given(head=st.just("\n".join(f"[{c}]" for c in FERPLUS_CLASSES)), text=TABLE_TOML)
def test_blend_table_from_any_toml_is_a_table_or_config_error(tmp_path, head, text):
    path = tmp_path / "t.toml"
    path.write_text(head + "\n" + text)
    try:
        with within(5.0):
            table = load_table("unified_v2", path)
    except ConfigError as err:
        _one_line(err)
        return
    assert isinstance(table, BlendTable) and np.isfinite(table.matrix).all()
    assert (np.abs(table.matrix) <= 1).all()


TRAIN_KEYS = [f.name for f in dataclasses.fields(TrainConfig)] + ["rotate", "flip", "method", "alpha", "cache"]
TRAIN_TOML = _toml(["augment", "kd", "model_kwargs", "nope"], TRAIN_KEYS)


def _typed_like_defaults(obj) -> None:
    for f in dataclasses.fields(obj):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(default):
            _typed_like_defaults(value)
        else:
            assert type(value) is type(default), (f.name, value)


@given(text=TRAIN_TOML)
def test_train_config_from_any_toml_is_a_typed_config_or_config_error(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    try:
        with within(5.0):
            cfg = TrainConfig.from_toml(path)
    except ConfigError as err:
        _one_line(err)
        return
    _typed_like_defaults(cfg)


# --- datasets: FER+ label.csv, fer2013.csv pair, AffectNet lists, class folders -------------

CSV_FIELDS = st.one_of(st.sampled_from(["1", "0", "10", "-1", "nan", "inf", "1e999", "", " 3 ", '"4"', "x", "300"]),
                       st.text(max_size=8))
CSV_TEXT = st.one_of(
    st.lists(st.lists(CSV_FIELDS, min_size=10, max_size=13).map(",".join), max_size=6).map("\n".join),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)


@given(raw=st.one_of(CSV_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=300),
                     st.just(b'a,"' + b"x" * 200_000 + b'"')))
def test_label_csv_from_any_bytes_is_rows_or_dataset_error(tmp_path, raw):
    path = tmp_path / "label.csv"
    path.write_bytes(raw)
    try:
        rows = read_label_csv(path)
    except DatasetError as err:
        _one_line(err)
        return
    for _, votes in rows:
        assert votes.shape == (N_VOTE_COLUMNS,) and np.isfinite(votes).all() and (votes >= 0).all()


@given(rows=st.lists(st.tuples(st.from_regex(r"fer[0-9]{7}\.png", fullmatch=True),
                               st.lists(st.integers(0, 10), min_size=10, max_size=10)), min_size=1, max_size=20))
def test_good_label_csv_rows_are_all_read(tmp_path, rows):
    path = tmp_path / "label.csv"
    path.write_text("\n".join(f'{n},"(0, 0, 48, 48)",' + ",".join(map(str, v)) for n, v in rows) + "\n")
    got = read_label_csv(path)
    assert [n for n, _ in got] == [n for n, _ in rows]
    assert all(np.array_equal(g, v) for (_, g), (_, v) in zip(got, rows))


@given(pixels=st.lists(st.one_of(st.integers(-5, 300).map(str), st.sampled_from(["x", "1.5", ""])), max_size=6),
       n=st.sampled_from([2304, 2303, 1]), usage=st.sampled_from(["Training", "PublicTest", "x"]),
       votes=st.lists(CSV_FIELDS, min_size=10, max_size=11))
def test_fer2013_csv_pair_is_a_faceset_or_dataset_error(tmp_path, pixels, n, usage, votes):
    px = " ".join((pixels * n)[:n]) if pixels else ""
    (tmp_path / "fer2013.csv").write_text(f"emotion,pixels,Usage\n0,{px},{usage}\n")
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name," + ",".join("v" * 10) + "\n"
                                             + f"{usage},fer0000000.png," + ",".join(votes) + "\n")
    try:
        faces = load_ferplus_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", "train")
    except DatasetError as err:
        _one_line(err)
        return
    assert faces.images.shape[1:] == (48, 48) and np.isfinite(faces.targets).all()


NUMBER = st.one_of(st.floats(), st.integers(-10**6, 10**6)).map(str) | st.sampled_from(["", "x", "1e999"])


@given(rows=st.lists(st.tuples(st.sampled_from(["a.png", "missing.png", "", "sub/../a.png"]), NUMBER, NUMBER,
                               NUMBER, NUMBER, st.integers(-3, 12).map(str) | st.sampled_from(["", "1.5"])),
                     max_size=5),
       extra=st.booleans())
def test_affectnet_list_is_a_faceset_or_dataset_error(tmp_path, rows, extra):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((64, 64, 3), 100, np.uint8))
    (tmp_path / "sub").mkdir(exist_ok=True)
    lines = [",".join(AFFECTNET_COLUMNS)]
    lines += [",".join([p, x, y, w, h, '"1;2"', code, "0", "0"] + (["z"] if extra else [])) for p, x, y, w, h, code in rows]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    try:
        with within(10.0):
            faces = load_affectnet(tmp_path, "train", list_file=tmp_path / "list.csv", images_dir=tmp_path)
    except DatasetError as err:
        _one_line(err)
        return
    assert faces.images.shape[1:] == (48, 48) and faces.images.dtype == np.uint8
    assert len(faces) == sum(1 for r in rows if r[5].lstrip("-").isdigit() and int(r[5]) < 8)


@given(folders=st.lists(st.one_of(st.sampled_from(FERPLUS_CLASSES), st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True)),
                        max_size=3, unique=True),
       files=st.lists(st.tuples(st.sampled_from(["a.png", "b.jpg", "c.txt", "d.bmp"]),
                                st.one_of(st.binary(max_size=200), st.just(b"png"))), max_size=3))
def test_class_folders_are_a_faceset_or_dataset_error(tmp_path, folders, files):
    root = Path(tempfile.mkdtemp(dir=tmp_path))  # tmp_path is shared by every example
    ok, png = cv2.imencode(".png", np.full((30, 30), 7, np.uint8))
    for i, name in enumerate(folders):
        d = root / f"{i}" / name
        d.mkdir(parents=True)
    for i, name in enumerate(folders):
        for fname, data in files:
            (root / f"{i}" / name / fname).write_bytes(png.tobytes() if data == b"png" else data)
    for i in range(len(folders)):
        try:
            faces = load_class_folders(root / f"{i}")
        except DatasetError as err:
            _one_line(err)
            continue
        assert faces.images.shape[1:] == (48, 48)
