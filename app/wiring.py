"""From the app's settings to the core's configs: the pipeline, the avatar sinks, the profile.

Qt-free, so what the window starts is testable without a window. The per-source defaults
(``core.source_spec.source_defaults``) are the ones ``vrfer run`` applies: a folder or an
image is never tracked or smoothed across frames, whatever the smoothing controls say.
"""
from __future__ import annotations

from pathlib import Path

from vrfer.app.settings import Avatar, Settings
from vrfer.core.adapt import ModelFingerprint, check_profile, file_sha256, load_profile, profile_path
from vrfer.core.avatar.sinks import AvatarConfig
from vrfer.core.errors import VrferError
from vrfer.core.face import FaceConfig
from vrfer.core.model import default_model_path
from vrfer.core.pipeline import PipelineConfig
from vrfer.core.smoothing import SmoothingConfig
from vrfer.core.source_spec import source_defaults


def runtime_config(settings: Settings, realtime: bool) -> dict[str, object]:
    """The settings a running pipeline takes without a restart (``Pipeline.update``)."""
    defaults = source_defaults(settings.source, realtime)
    mc = settings.mouth_camera
    if mc.enabled and mc.roi is not None:
        face = FaceConfig(mode="roi", roi=mc.roi, rotate=mc.rotate, flip=mc.flip)
    else:
        face = FaceConfig(tracking=defaults.tracking)
    sm = settings.smoothing
    smoothing = SmoothingConfig(method=sm.method, strength=sm.strength if defaults.smoothing else 0.0,
                                margin=sm.margin if defaults.smoothing else 0.0, min_hold_frames=sm.min_hold_frames)
    return {"face": face, "smoothing": smoothing, "calibration": dict(settings.calibration) or None}


def pipeline_config(settings: Settings, realtime: bool, profile: str | None) -> PipelineConfig:
    return PipelineConfig(source=settings.source, realtime=realtime, model=settings.model or None, profile=profile,
                          **runtime_config(settings, realtime))


def avatar_config(a: Avatar) -> AvatarConfig:
    """The one output chosen (VRChat or VRCFaceTracking, never both), with every option ``vrfer run`` has."""
    return AvatarConfig(vrchat=a.vrchat_target if a.output == "vrchat" else None, vrchat_ft=a.vrchat_ft,
                        vrchat_listen=a.vrchat_listen, vrcft=a.vrcft_target if a.output == "vrcft" else None,
                        rate_hz=a.rate_hz, openxr=a.openxr)


def profile_file(name: str) -> str | None:
    """The chosen profile's file, or None (none chosen, or not a valid name)."""
    try:
        return str(profile_path(name)) if name else None
    except VrferError:
        return None


def profile_setting(profile: str) -> str:
    """A profile file in the profiles folder is stored by name (what the picker lists), others by path."""
    if not profile:
        return ""
    path = Path(profile)
    try:
        if path.stem != profile and profile_path(path.stem).resolve() == path.resolve():
            return path.stem
    except VrferError:  # a file name that is not a valid profile name: keep the path
        pass
    return profile


class ModelFiles:
    """The model file the next start loads and its sha256, cached per (path, size, mtime)."""

    def __init__(self) -> None:
        self._sha: dict[tuple[str, int, int], str] = {}

    def sha(self, model: str) -> tuple[Path, str] | None:
        """None when the file is missing (the start reports that itself)."""
        try:
            path = Path(model) if model else default_model_path()
            st = path.stat()
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
            if key not in self._sha:
                self._sha[key] = file_sha256(path)
        except (VrferError, OSError):
            return None
        return path, self._sha[key]

    def check_profile(self, profile: str, model: str) -> None:
        """ConfigError for a profile that cannot be read, ModelError for one fitted on another model file.
        Reads the profile JSON and the model's sha256 only; the pipeline's own load still checks in full."""
        prof = load_profile(profile)
        found = self.sha(model)
        if found is not None:
            path, sha = found
            # Same sha256, same file, so same classes and embedding: the core check's message with this file.
            check_profile(prof, ModelFingerprint(sha, prof.model.classes, prof.model.embedding_dim, path.stem), path)
