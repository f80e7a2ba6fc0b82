"""Personal calibration profiles: fitting, skipped classes, storage, model binding, the pipeline."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vrfer.core.adapt import (
    MIN_SAMPLES, ModelFingerprint, Profile, fit_profile, list_profiles, load_profile, model_fingerprint,
    profile_path, save_profile,
)
from vrfer.core.errors import ConfigError, ModelError
from vrfer.core.model import ExpressionModel

CLASSES = ("neutral", "happiness", "surprise")
FP = ModelFingerprint("ab" * 32, CLASSES, 8, "synthetic")


def shifted_world(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A general model that is right on clean embeddings, and a camera that adds a constant
    offset toward 'neutral': (embeddings, general probabilities, labels) under that camera."""
    rng = np.random.default_rng(seed)
    means = np.zeros((3, 8))
    means[0, 0] = means[1, 1] = means[2, 2] = 2.0
    labels = np.repeat(np.arange(3), n_per_class)
    clean = means[labels] + rng.normal(0, 0.6, (len(labels), 8))
    shifted = clean + np.array([2.0, 0, 0, 0, 0, 0, 0, 0]) + np.array([0, 0, 0, 1.0, 1.0, 0, 0, 0])
    logits = 2.0 * shifted @ means.T / 2.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return shifted, probs / probs.sum(1, keepdims=True), labels


def test_fit_profile_recovers_accuracy_under_a_shift():
    e, p, y = shifted_world(10, seed=0)
    profile = fit_profile(e, p, y, FP, l2=1.0)
    e2, p2, y2 = shifted_world(200, seed=1)  # held out
    before = np.mean(p2.argmax(1) == y2)
    after = np.mean(profile.apply(p2, e2).argmax(1) == y2)
    assert before < 0.75  # the camera really hurts the general model
    assert after > before + 0.15
    assert profile.fitted == CLASSES and profile.skipped == ()
    assert profile.samples == {"neutral": 10, "happiness": 10, "surprise": 10}


def test_fit_profile_stronger_prior_stays_closer_to_the_general_model():
    e, p, y = shifted_world(10, seed=0)
    weak, strong = fit_profile(e, p, y, FP, l2=0.5), fit_profile(e, p, y, FP, l2=500.0)
    assert np.abs(strong.weights).sum() < 0.2 * np.abs(weak.weights).sum()
    np.testing.assert_allclose(strong.apply(p, e), p, atol=0.1)


def test_fit_profile_skipped_class_falls_back_to_the_general_model():
    e, p, y = shifted_world(10, seed=0)
    keep = (y != 2) | (np.arange(len(y)) == np.flatnonzero(y == 2)[0])  # one surprise face: below MIN_SAMPLES
    assert MIN_SAMPLES > 1
    profile = fit_profile(e[keep], p[keep], y[keep], FP, l2=1.0)
    assert profile.skipped == ("surprise",) and "surprise" not in profile.samples
    assert not profile.weights[2].any() and profile.bias[2] == 0.0
    logp = np.log(p)
    np.testing.assert_array_equal(profile.adapt_logits(logp, e)[:, 2], logp[:, 2])
    # a face the general model calls surprise with confidence is still surprise
    e_s, p_s, y_s = shifted_world(50, seed=3)
    sure = (p_s.argmax(1) == 2) & (p_s[:, 2] > 0.95)
    assert sure.any()
    assert (profile.apply(p_s[sure], e_s[sure]).argmax(1) == 2).all()


@pytest.mark.parametrize("labels, message", [
    ([0] * 5, "record at least two expressions with 2+ faces each to calibrate (got neutral 5)"),
    ([0] * 5 + [1], "record at least two expressions with 2+ faces each to calibrate (got neutral 5, happiness 1)"),
    ([], "record at least two expressions with 2+ faces each to calibrate (got none)"),
])
def test_fit_profile_needs_two_recorded_classes(labels, message):
    n = len(labels)
    with pytest.raises(ConfigError) as err:
        fit_profile(np.ones((n, 8)), np.full((n, 3), 1 / 3), np.array(labels, dtype=int), FP)
    assert str(err.value) == message


def test_profile_save_load_round_trip_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("VRFER_PROFILES", str(tmp_path / "profiles"))
    e, p, y = shifted_world(10, seed=0)
    profile = fit_profile(e, p, y, FP, l2=2.0, name="alice")
    path = save_profile(profile, "alice")
    assert path == tmp_path / "profiles" / "alice.json" == profile_path("alice")
    assert list_profiles() == ["alice"]
    loaded = load_profile("alice", FP)
    assert loaded.model == FP and loaded.samples == profile.samples and loaded.l2 == 2.0
    np.testing.assert_array_equal(loaded.weights, profile.weights)
    np.testing.assert_array_equal(loaded.bias, profile.bias)
    np.testing.assert_array_equal(loaded.apply(p, e), profile.apply(p, e))
    doc = json.loads(path.read_text())
    assert doc["format"] == "vrfer-profile" and doc["version"] == 1 and doc["model"]["sha256"] == FP.sha256


def _real_profile(model: ExpressionModel, name: str = "real") -> Profile:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, *model.spec.input_shape)).astype(np.float32)
    probs, emb = model.predict(x)
    return fit_profile(emb, probs, np.repeat([0, 1, 2, 3], 10), model_fingerprint(model), name=name)


def test_load_profile_refuses_a_profile_of_another_model(tmp_path, tiny_model, make_onnx):
    model = ExpressionModel(tiny_model)
    path = save_profile(_real_profile(model), tmp_path / "real.json")
    assert load_profile(path, model).fitted == ("neutral", "happiness", "surprise", "sadness")
    other = ExpressionModel(make_onnx("other.onnx", seed=1))  # same classes and size, other weights
    with pytest.raises(ModelError) as err:
        load_profile(path, other)
    text = str(err.value)
    assert "profile real was fitted on model tiny-test" in text and "the model file differs" in text
    assert "vrfer calibrate" in text and "\n" not in text
    wider = ExpressionModel(make_onnx("wider.onnx", embedding=32))
    with pytest.raises(ModelError, match="classes or embedding size differ"):
        load_profile(path, wider)


def test_model_fingerprint_refuses_a_model_without_embedding(tmp_path, tiny_model):
    import onnx

    m = onnx.load(str(tiny_model))
    keep = [o for o in m.graph.output if o.name == "logits"]
    del m.graph.output[:]
    m.graph.output.extend(keep)
    path = tmp_path / "no_emb.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="has no 'embedding' output, so it cannot be calibrated"):
        model_fingerprint(ExpressionModel(path))


@pytest.mark.parametrize("text, message", [
    ("{not json", "not a readable profile (Expecting property name"),
    ('{"format": "something"}', "not a vrfer profile (no format 'vrfer-profile')"),
    ('{"format": "vrfer-profile", "version": 9}', "profile version 9 is not supported"),
    ('{"format": "vrfer-profile", "version": 1, "model": {"sha256": "x", "classes": ["a", "b"], '
     '"embedding_dim": 2}, "weights": [[1, 2]], "bias": [0, 0], "samples": {"a": 3}}',
     "profile weights must be finite, 2 x 2 and 2; got (1, 2) and (2,)"),
    ('{"format": "vrfer-profile", "version": 1, "model": {"classes": ["a"]}}', "profile field is missing"),
])
def test_load_profile_corrupt_file_is_one_line_error(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert message in str(err.value) and str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_profile_path_rejects_odd_names(tmp_path, monkeypatch):
    monkeypatch.setenv("VRFER_PROFILES", str(tmp_path))
    with pytest.raises(ConfigError, match="profile name 'my face' may use only letters"):
        profile_path("my face")
    assert profile_path("sub/x.json").name == "x.json"
    with pytest.raises(ConfigError, match=r"nobody.json: profile not found \(record one with 'vrfer calibrate'\)"):
        load_profile("nobody")


def test_pipeline_applies_the_profile_to_each_frame(tmp_path, tiny_model):
    from vrfer.core.face import FaceConfig
    from vrfer.core.pipeline import Pipeline, PipelineConfig
    from vrfer.core.smoothing import SmoothingConfig

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    model = ExpressionModel(tiny_model)
    profile = _real_profile(model)
    path = save_profile(profile, tmp_path / "p.json")
    states = []
    cfg = PipelineConfig(source=str(folder), model=tiny_model, profile=path,
                         face=FaceConfig(mode="roi", roi=(0, 48, 96, 48)),
                         smoothing=SmoothingConfig(strength=0.0, margin=0.0))
    pipe = Pipeline(cfg)
    pipe.subscribe(states.append)
    pipe.start()
    assert pipe.wait(30)
    pipe.stop()
    assert len(states) == 4 and all(s.face for s in states)
    for s in states:
        raw = np.array([s.raw_probs[c] for c in model.classes])
        shown = np.array([s.probs[c] for c in model.classes])
        np.testing.assert_allclose(shown, profile.apply(raw, s.embedding), atol=1e-6)
        assert not np.allclose(shown, raw, atol=1e-3)


def test_fit_profile_with_the_training_prior_does_not_learn_the_recordings_balance():
    """A balanced recording of a model that is already right must not flatten its class prior."""
    import dataclasses

    rng = np.random.default_rng(3)
    prior = np.array([0.7, 0.2, 0.1])
    labels = np.repeat(np.arange(3), 20)  # balanced, as a guided recording is
    emb = rng.normal(0, 1, (len(labels), 8))  # uninformative embeddings
    probs = np.tile(prior, (len(labels), 1))  # the general model: only its prior
    plain = fit_profile(emb, probs, labels, FP, l2=1.0)
    adjusted = fit_profile(emb, probs, labels, dataclasses.replace(FP, prior=tuple(prior)), l2=1.0)
    test_emb = rng.normal(0, 1, (200, 8))
    test_probs = np.tile(prior, (200, 1))
    # without the adjustment the bias pulls every face toward the rare classes ...
    assert (plain.apply(test_probs, test_emb).argmax(1) != 0).mean() > 0.3
    # ... with it the correction stays near zero and the prior survives
    assert np.abs(adjusted.bias).max() < 0.3
    assert (adjusted.apply(test_probs, test_emb).argmax(1) == 0).mean() > 0.95


def test_model_class_prior_metadata_is_read_and_checked(make_onnx, tiny_meta):
    good = ExpressionModel(make_onnx("p.onnx", meta={**tiny_meta, "vrfer.class_prior": "2,1,1,1,1,1,1,2"}))
    assert good.info.class_prior is not None and abs(good.info.class_prior.sum() - 1) < 1e-9
    assert model_fingerprint(good).prior[0] == pytest.approx(0.2)
    with pytest.raises(ModelError, match=r"vrfer.class_prior must be 8 positive numbers"):
        ExpressionModel(make_onnx("bad.onnx", meta={**tiny_meta, "vrfer.class_prior": "1,0,1"}))
