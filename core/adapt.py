"""Personal calibration: a light head fitted on one user's recorded embeddings, in seconds.

The general model stays as it is. A profile adds a correction to its log-probabilities::

    adapted logits = log p_general(x) + dW @ embedding(x) + db

fitted by multinomial logistic regression with a Gaussian prior centred on *no change*
(ridge on ``dW, db``), i.e. logistic regression with the general head as its prior. Working
on the general model's own output rather than on its head's weights means the head never has
to be recovered from the ONNX file (onnxruntime cannot read initialisers) and the prior is
exact. Classes the user skipped keep zero rows, so they are the general model's logit
unchanged; the fit's softmax runs over the recorded classes only, so it never learns to push
a skipped class down merely because it was not shown.

Profiles are JSON files in the user's data directory (``$VRFER_PROFILES`` overrides it),
versioned, and tied to the model they were fitted on by the sha256 of the model file, its
class list and embedding size: a profile for another model is refused in one line.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vrfer.core.errors import ConfigError, ModelError
from vrfer.core.paths import user_dirs
from vrfer.core.untrusted import PARSE_ERRORS

if TYPE_CHECKING:
    from vrfer.core.model import ExpressionModel

PROFILE_FORMAT = "vrfer-profile"
PROFILE_VERSION = 1
PROFILE_SUFFIX = ".json"
DEFAULT_L2 = 10.0  # prior strength; chosen on shifted FER+ Valid with the logit adjustment (docs/results.md), not on Test
MIN_SAMPLES = 2  # a class with fewer recorded faces is treated as skipped
MAX_ITERS = 400
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ModelFingerprint:
    """What a profile is tied to: the exact model file, its classes and embedding size."""

    sha256: str
    classes: tuple[str, ...]
    embedding_dim: int
    name: str = ""
    prior: tuple[float, ...] | None = None  # the model's training class frequencies (not stored)

    def matches(self, other: ModelFingerprint) -> bool:
        return (self.sha256, self.classes, self.embedding_dim) == (other.sha256, other.classes, other.embedding_dim)


@dataclass(frozen=True)
class Profile:
    """A fitted correction. ``weights`` is K x D and ``bias`` K, in the model's class order;
    rows of skipped classes are zero."""

    model: ModelFingerprint
    weights: np.ndarray
    bias: np.ndarray
    samples: dict[str, int]  # recorded faces per fitted class
    l2: float = DEFAULT_L2
    created: str = ""
    name: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    @property
    def fitted(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c in self.samples)

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c not in self.samples)

    def adapt_logits(self, logp: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """General log-probabilities (N x K) and embeddings (N x D) -> adapted logits."""
        return logp + embedding @ self.weights.T + self.bias

    def apply(self, probs: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """General probabilities -> adapted probabilities (one row or N rows, float64)."""
        p = np.asarray(probs, dtype=np.float64)
        e = np.asarray(embedding, dtype=np.float64)
        if e.shape[-1] != self.weights.shape[1]:
            raise ModelError(f"profile expects a {self.weights.shape[1]}-d embedding, the model gave {e.shape[-1]}")
        z = self.adapt_logits(np.log(np.maximum(p, 1e-30)), e)
        z -= z.max(axis=-1, keepdims=True)
        out = np.exp(z)
        return out / out.sum(axis=-1, keepdims=True)


# -- model identity ------------------------------------------------------------------------

def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_fingerprint(model: ExpressionModel) -> ModelFingerprint:
    """The fingerprint of a loaded model; ModelError when it has no embedding output."""
    if not model.info.has_embedding:
        raise ModelError(f"{model.path}: the model has no 'embedding' output, so it cannot be calibrated; "
                         "re-export it with 'vrfer export'")
    dims = {o.name: o.shape for o in model.session.get_outputs()}["embedding"]
    dim = dims[-1] if isinstance(dims[-1], int) else int(model.predict(
        np.zeros((1, *model.spec.input_shape), np.float32))[1].shape[-1])
    prior = model.info.class_prior
    return ModelFingerprint(file_sha256(model.path), tuple(model.classes), int(dim), model.info.name,
                            None if prior is None else tuple(float(v) for v in prior))


# -- fitting -------------------------------------------------------------------------------

def fit_profile(embeddings: np.ndarray, probs: np.ndarray, labels: np.ndarray, model: ModelFingerprint, *,
                l2: float = DEFAULT_L2, min_samples: int = MIN_SAMPLES, name: str = "",
                max_iters: int = MAX_ITERS) -> Profile:
    """Fit a profile on recorded faces: embeddings N x D, the general model's probabilities
    N x K and class indices N. Classes with fewer than ``min_samples`` faces are skipped.

    Minimises ``sum_i w_i CE_R(i) + l2/2 (|dW|^2 + |db|^2)`` where ``CE_R`` is cross-entropy
    over the recorded classes R and ``w_i`` balances the classes (each class weighs as much as
    the average class), with embeddings scaled to unit mean square norm so that ``l2`` means
    the same for any network. Convex; accelerated gradient descent converges in milliseconds.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    k, d = len(model.classes), model.embedding_dim
    if e.ndim != 2 or e.shape[1] != d or p.shape != (len(e), k) or y.shape != (len(e),):
        raise ModelError(f"calibration data has shapes {e.shape}, {p.shape}, {y.shape}; expected N x {d}, "
                         f"N x {k} and N for model {model.name or model.sha256[:12]}")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ConfigError(f"calibration labels must be class indices 0..{k - 1}")
    if l2 <= 0:
        raise ConfigError(f"the prior strength l2 must be > 0, got {l2}")
    counts = np.bincount(y, minlength=k)
    recorded = np.flatnonzero(counts >= min_samples)
    if len(recorded) < 2:
        raise ConfigError(f"record at least two expressions with {min_samples}+ faces each to calibrate "
                          f"(got {', '.join(f'{model.classes[i]} {counts[i]}' for i in np.flatnonzero(counts)) or 'none'})")
    keep = np.isin(y, recorded)
    e, p, y = e[keep], p[keep], y[keep]
    col = {c: j for j, c in enumerate(recorded)}
    yr = np.array([col[c] for c in y])
    n, r = len(y), len(recorded)

    scale = float(np.sqrt(np.mean(np.sum(e * e, axis=1)))) or 1.0
    x = np.hstack([e / scale, np.ones((n, 1))])  # the last column carries the bias
    base = np.log(np.maximum(p[:, recorded], 1e-30))
    if model.prior is not None:
        # Logit adjustment: the balanced recording has a uniform class prior, the general model
        # the training set's. Fit under the recording's prior and apply without it, so the
        # correction learns how this user's faces look, not that every class is equally likely.
        train_prior = np.asarray(model.prior, dtype=np.float64)[recorded]
        base = base + np.log(train_prior.sum() / (r * train_prior))
    w = (n / (r * counts[recorded]))[yr]  # class-balanced sample weights, summing to n
    onehot = np.zeros((n, r))
    onehot[np.arange(n), yr] = 1.0

    def grad(theta: np.ndarray) -> np.ndarray:  # theta: (D+1) x R
        z = base + x @ theta
        z -= z.max(axis=1, keepdims=True)
        q = np.exp(z)
        q /= q.sum(axis=1, keepdims=True)
        return x.T @ ((q - onehot) * w[:, None]) + l2 * theta

    # Softmax cross-entropy's Hessian is at most 1/2 X^T W X (per class): a safe step size.
    lipschitz = 0.5 * float(np.linalg.eigvalsh((x * w[:, None]).T @ x)[-1]) + l2
    theta = np.zeros((d + 1, r))
    prev = theta
    for it in range(max_iters):  # Nesterov-accelerated gradient descent
        look = theta + (it / (it + 3.0)) * (theta - prev)
        g = grad(look)
        prev, theta = theta, look - g / lipschitz
        if np.abs(g).max() < 1e-6 * n:
            break

    weights = np.zeros((k, d))
    bias = np.zeros(k)
    weights[recorded] = (theta[:d] / scale).T
    bias[recorded] = theta[d]
    samples = {model.classes[c]: int(counts[c]) for c in recorded}
    return Profile(model, weights, bias, samples, float(l2), time.strftime("%Y-%m-%dT%H:%M:%S%z"), name)


# -- storage -------------------------------------------------------------------------------

def profiles_dir() -> Path:
    """Where named profiles live: ``$VRFER_PROFILES``, else ``<user data dir>/profiles``."""
    env = os.environ.get("VRFER_PROFILES")
    if env:
        return Path(env)
    return Path(user_dirs().user_data_dir) / "profiles"


def profile_path(profile: str | os.PathLike[str]) -> Path:
    """A profile name (``alice``) -> its file in ``profiles_dir()``; a path stays a path."""
    text = os.fspath(profile)
    if os.sep in text or "/" in text or text.endswith(PROFILE_SUFFIX):
        return Path(text)
    if not _NAME.match(text):
        raise ConfigError(f"profile name {text!r} may use only letters, digits, '_', '.' and '-' "
                          "(or give a path ending in .json)")
    return profiles_dir() / f"{text}{PROFILE_SUFFIX}"


def list_profiles() -> list[str]:
    """Names of the profiles saved in ``profiles_dir()``."""
    folder = profiles_dir()
    return sorted(p.stem for p in folder.glob(f"*{PROFILE_SUFFIX}")) if folder.is_dir() else []


def save_profile(profile: Profile, where: str | os.PathLike[str]) -> Path:
    """Write atomically (a crash never leaves half a profile) and return the path."""
    path = profile_path(where)
    doc = {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "name": profile.name or path.stem,
        "created": profile.created,
        "model": {"sha256": profile.model.sha256, "name": profile.model.name,
                  "classes": list(profile.model.classes), "embedding_dim": profile.model.embedding_dim},
        "l2": profile.l2,
        "samples": profile.samples,
        "skipped": list(profile.skipped),
        "bias": [float(v) for v in profile.bias],
        "weights": [[float(v) for v in row] for row in profile.weights],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the profile ({exc.strerror or exc})") from None
    return path


def load_profile(profile: str | os.PathLike[str], model: ExpressionModel | ModelFingerprint | None = None) -> Profile:
    """Read a profile by name or path; with ``model``, refuse one fitted on another model.

    ConfigError for a missing, corrupt or newer-format file; ModelError for a model mismatch.
    """
    path = profile_path(profile)
    if not path.is_file():
        known = list_profiles()
        hint = f" (saved profiles: {', '.join(known)})" if known else " (record one with 'vrfer calibrate')"
        raise ConfigError(f"{path}: profile not found{hint}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, *PARSE_ERRORS) as exc:
        raise ConfigError(f"{path}: not a readable profile ({_first_line(exc)})") from None
    prof = _from_doc(doc, path)
    if model is not None:
        fp = model if isinstance(model, ModelFingerprint) else model_fingerprint(model)
        check_profile(prof, fp, getattr(model, "path", None))
    return prof


def check_profile(profile: Profile, model: ModelFingerprint, model_path: Path | None = None) -> None:
    if profile.model.matches(model):
        return
    where = f"{model_path} " if model_path else ""
    if profile.model.classes != model.classes or profile.model.embedding_dim != model.embedding_dim:
        why = "classes or embedding size differ"
    else:
        why = "the model file differs"
    raise ModelError(
        f"profile {profile.name or profile.path} was fitted on model {profile.model.name or '?'} "
        f"(sha256 {profile.model.sha256[:12]}), not on {where}({model.name or '?'}, sha256 {model.sha256[:12]}): "
        f"{why}; record it again with 'vrfer calibrate'")


def _from_doc(doc: Any, path: Path) -> Profile:
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        raise ConfigError(f"{path}: not a vrfer profile (no format '{PROFILE_FORMAT}')")
    version = doc.get("version")
    if not isinstance(version, int) or version > PROFILE_VERSION or version < 1:
        raise ConfigError(f"{path}: profile version {version!r} is not supported (this vrfer reads "
                          f"{PROFILE_VERSION}); record it again with 'vrfer calibrate'")
    try:
        m = doc["model"]
        fp = ModelFingerprint(str(m["sha256"]), tuple(str(c) for c in m["classes"]), int(m["embedding_dim"]),
                              str(m.get("name", "")))
        weights = np.asarray(doc["weights"], dtype=np.float64)
        bias = np.asarray(doc["bias"], dtype=np.float64)
        samples = {str(c): int(v) for c, v in dict(doc["samples"]).items()}
        l2 = float(doc.get("l2", DEFAULT_L2))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: 1e400 spelt as an integer
        raise ConfigError(f"{path}: profile field is missing or malformed ({_first_line(exc)})") from None
    k, d = len(fp.classes), fp.embedding_dim
    if weights.shape != (k, d) or bias.shape != (k,) or not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        raise ConfigError(f"{path}: profile weights must be finite, {k} x {d} and {k}; got {weights.shape} and {bias.shape}")
    unknown = sorted(set(samples) - set(fp.classes))
    if unknown:
        raise ConfigError(f"{path}: profile names class {unknown[0]!r}, which its model does not have")
    return Profile(fp, weights, bias, samples, l2, str(doc.get("created", "")), str(doc.get("name", path.stem)), path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
