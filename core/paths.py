"""Where vrfer finds data and keeps per-user files. One setting each, overridable by environment."""
from __future__ import annotations

import os
from pathlib import Path

from importlib.resources import files

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (site-packages/vrfer when installed)
# Inside the checkout, the wheel or the desktop bundle alike. A file always shipped anchors the
# folder: in a PyInstaller bundle files() is a MultiplexedPath, whose str() is not a path.
ASSETS_DIR = Path(str(files("vrfer.assets").joinpath("face_template.json"))).parent


def ferplus_dir() -> Path:
    """The FER+ folder: ``$VRFER_FERPLUS``, else ``../shared/data/ferplus`` beside the checkout."""
    env = os.environ.get("VRFER_FERPLUS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "ferplus"


def ferplus_available() -> bool:
    root = ferplus_dir()
    return (root / "FER2013Test" / "label.csv").is_file()


def user_dirs():
    """platformdirs for settings (config), profiles (data) and caches."""
    from platformdirs import PlatformDirs

    return PlatformDirs("vrfer", appauthor=False)


def cache_dir() -> Path:
    env = os.environ.get("VRFER_CACHE")
    path = Path(env) if env else Path(user_dirs().user_cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    """Where vrfer writes its log: ``$VRFER_LOG_DIR``, else the platform's per-user log folder."""
    env = os.environ.get("VRFER_LOG_DIR")
    return Path(env) if env else Path(user_dirs().user_log_dir)


def log_file() -> Path:
    """The log a user attaches to a bug report (``vrfer doctor`` prints its path)."""
    return log_dir() / "vrfer.log"
