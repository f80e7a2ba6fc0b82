"""Where vrfer finds data and keeps per-user files. One setting each, overridable by environment."""
from __future__ import annotations

import os
from pathlib import Path

from importlib.resources import files

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (site-packages/vrfer when installed)
ASSETS_DIR = Path(str(files("vrfer.assets")))  # inside the wheel or the checkout alike


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
