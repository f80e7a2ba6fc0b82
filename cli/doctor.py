"""``vrfer doctor``: what a user needs to know when something is wrong, one line per check.

Each check returns ``Check`` values: ``ok`` (✓), ``warn`` (!: works, with a limit worth
knowing) or ``fail`` (✗: a part vrfer needs is broken), each with a fix. The command exits 1
when any check fails. Everything is looked at for real: the model is loaded and run, the face
mesh is built, each camera is opened, the OSC ports are bound, Qt is started in a child
process (a missing platform plugin aborts the process that loads it).
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vrfer.core import paths

SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗"}
ASCII_SYMBOLS = {"ok": "ok", "warn": "!!", "fail": "XX"}  # a console that cannot print ✓ (e.g. cp1252)
OSC_PORTS = (("VRChat OSC", 9000, "start VRChat and turn OSC on (Action Menu > Options > OSC > Enabled)"),
             ("VRCFaceTracking", 8888, "start VRCFaceTracking with its Babble module"))
# The mediapipe graph and models that core.face's FaceMesh(refine_landmarks=True) loads.
MEDIAPIPE_FILES = ("modules/face_landmark/face_landmark_front_cpu.binarypb",
                   "modules/face_landmark/face_landmark_with_attention.tflite",
                   "modules/face_detection/face_detection_short_range.tflite")
# The full-range detector of core.face.far: optional (FaceConfig.far_faces is off by default).
FAR_FILES = ("modules/face_detection/face_detection_full_range_cpu.binarypb",
             "modules/face_detection/face_detection_full_range_sparse.tflite")
# The OpenXR implicit layer's state, "module:function" returning a one-line str or raising
# VrferError; reported when that module exists in this vrfer.
QT_LIBS_APT = ("libegl1 libgl1 libfontconfig1 libxkbcommon0 libglib2.0-0 libdbus-1-3 fonts-dejavu-core "
               "libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("doctor", help="check the installation: model, mediapipe, cameras, Qt, OSC, OpenXR",
                              description="Check everything vrfer needs, one line each with a fix; "
                                          "exit 1 when a check fails.")
    p.add_argument("--model", type=Path, help="check this ONNX model (default: the shipped student or $VRFER_MODEL)")
    p.add_argument("--max-index", type=int, default=10, metavar="N", help="try camera indices below N (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object per check")
    p.add_argument("--probe-qt", action="store_true", help=argparse.SUPPRESS)  # the Qt check's child process
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.probe_qt:
        return _probe_qt()
    checks = run_checks(model=args.model, max_index=max(1, args.max_index))
    log = logging.getLogger("vrfer.doctor")  # the report goes into the log file too, for a bug report
    for check in checks:
        log.info("%s %s: %s%s", check.status, check.name, check.detail, f" (fix: {check.fix})" if check.fix else "")
        print(json.dumps(dataclasses.asdict(check)) if args.json else format_check(check))
    return 1 if any(c.status == "fail" for c in checks) else 0


def format_check(check: Check, encoding: str | None = None) -> str:
    encoding = encoding or getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        "✓✗".encode(encoding)
        symbols = SYMBOLS
    except (UnicodeEncodeError, LookupError):
        symbols = ASCII_SYMBOLS
    fix = f"\n    fix: {check.fix}" if check.fix and check.status != "ok" else ""
    return f"{symbols[check.status]} {check.name}: {check.detail}{fix}"


def run_checks(*, model: Path | None = None, max_index: int = 10,
               osc_ports: tuple[tuple[str, int, str], ...] = OSC_PORTS) -> list[Check]:
    """Every check, in the order a user reads them; a check that raises is a failed check."""
    steps: list[Callable[[], list[Check]]] = [
        check_python, check_packages, lambda: check_model(model), check_locator, check_mediapipe,
        lambda: check_cameras(max_index), check_qt, lambda: check_osc(osc_ports), check_openxr, check_openxr_layer,
        check_settings, check_folders,
    ]
    out: list[Check] = []
    for step in steps:
        try:
            out.extend(step())
        except Exception as exc:  # noqa: BLE001 - a broken part must not hide the checks after it
            name = getattr(step, "__name__", "check").removeprefix("check_")
            out.append(Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {_line(exc)}",
                             "run 'vrfer -v doctor' and attach the log file to a bug report"))
    return out


def _line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())[:300]


# ---------------------------------------------------------------- python and packages


def check_python() -> list[Check]:
    version = sys.version.split()[0]
    where = "desktop bundle" if getattr(sys, "frozen", False) else sys.executable
    if sys.version_info[:2] == (3, 11):
        return [Check("python", "ok", f"{version} ({where})")]
    return [Check("python", "warn", f"{version} ({where}); vrfer is built and tested on 3.11",
                  "install vrfer into a Python 3.11 environment (pipx install --python python3.11 ...)")]


def pinned_requirements() -> dict[str, str]:
    """vrfer's base dependencies and their pinned versions, from its installed metadata."""
    pins: dict[str, str] = {}
    for req in importlib.metadata.requires("vrfer") or []:
        if "extra ==" in req:
            continue  # the optional extras are reported separately
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^;\s]+)", req)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def check_packages() -> list[Check]:
    try:
        pins = pinned_requirements()
    except importlib.metadata.PackageNotFoundError:
        return [Check("packages", "warn", "vrfer's package metadata is missing, so versions cannot be compared",
                      "reinstall vrfer (pip install --force-reinstall vrfer-*.whl)")]
    out: list[Check] = []
    good: list[str] = []
    for name, want in pins.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out.append(Check(f"package {name}", "fail", "not installed", f"pip install '{name}=={want}'"))
            continue
        if have != want:
            out.append(Check(f"package {name}", "warn", f"{have} installed; vrfer is tested with {want}",
                             f"pip install '{name}=={want}'"))
        else:
            good.append(f"{name} {have}")
    for clash in ("opencv-python", "opencv-python-headless"):
        if _installed(clash):
            out.append(Check(f"package {clash}", "warn", "installed beside opencv-contrib-python: both write cv2/, "
                             "and removing one breaks the other", f"pip uninstall {clash}, then pip install "
                             f"--force-reinstall 'opencv-contrib-python=={pins.get('opencv-contrib-python', '')}'"))
    extras = ", ".join(f"{extra} {'yes' if _installed(dist) else 'no'}"
                       for extra, dist in (("train", "torch"), ("openxr", "pyopenxr")))
    version = importlib.metadata.version("vrfer")
    out.insert(0, Check("packages", "ok" if len(good) == len(pins) else "warn",
                        f"vrfer {version}; {len(good)} of {len(pins)} as pinned ({', '.join(good)}); extras: {extras}"))
    return out


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


# ---------------------------------------------------------------- models


def check_model(path: Path | None = None) -> list[Check]:
    import numpy as np

    from vrfer.core.adapt import file_sha256
    from vrfer.core.errors import VrferError
    from vrfer.core.model import ExpressionModel, default_model_path

    fix = "reinstall vrfer, or pass --model PATH to an exported vrfer model"
    try:
        model = ExpressionModel(path or default_model_path())
        probs, _ = model.predict(np.zeros((1, *model.spec.input_shape), np.float32))
    except VrferError as exc:
        return [Check("model", "fail", _line(exc), fix)]
    info = model.info
    shape = "x".join(map(str, model.spec.input_shape))
    return [Check("model", "ok", f"{info.name}: {len(info.classes)} classes, input {shape}, preprocessing "
                  f"v{model.spec.version}, metadata checked, runs ({probs.shape[1]} outputs); "
                  f"{info.path} ({info.path.stat().st_size / 1e6:.1f} MB, sha256 {file_sha256(info.path)[:16]})")]


def check_locator() -> list[Check]:
    from vrfer.core.errors import VrferError
    from vrfer.core.face.headset import DEFAULT_LOCATOR, HeadsetLocator

    if not DEFAULT_LOCATOR.is_file():
        return [Check("headset locator", "warn", f"{DEFAULT_LOCATOR} is missing: faces under a headset are found "
                      "only by the face mesh, which misses most of them", "reinstall vrfer")]
    try:
        HeadsetLocator(DEFAULT_LOCATOR)
    except VrferError as exc:
        return [Check("headset locator", "fail", _line(exc), "reinstall vrfer")]
    return [Check("headset locator", "ok", f"{DEFAULT_LOCATOR.name} loads")]


def check_mediapipe() -> list[Check]:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return [Check("mediapipe", "fail", "not installed", "pip install 'mediapipe==0.10.21'")]
    root = Path(list(spec.submodule_search_locations)[0])
    missing = [f for f in MEDIAPIPE_FILES if not (root / f).is_file()]
    if missing:
        return [Check("mediapipe", "fail", f"face models missing from {root}: {', '.join(missing)}",
                      "pip install --force-reinstall 'mediapipe==0.10.21' (later versions ship no models)")]
    import mediapipe as mp
    import numpy as np

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        mesh.process(np.zeros((64, 64, 3), np.uint8))
    checks = [Check("mediapipe", "ok", f"{mp.__version__}: face detector and face mesh load ({root})")]
    far_missing = [f for f in FAR_FILES if not (root / f).is_file()]
    if far_missing:
        checks.append(Check("far faces", "warn", f"the full-range face detector is missing: {', '.join(far_missing)}; "
                            "only the optional far-face search (FaceConfig.far_faces, off by default) needs it",
                            "pip install --force-reinstall 'mediapipe==0.10.21'"))
    else:
        with mp.solutions.face_detection.FaceDetection(model_selection=1) as far:
            far.process(np.zeros((64, 64, 3), np.uint8))
        checks.append(Check("far faces", "ok", "the full-range face detector loads (optional; off by default)"))
    return checks


# ---------------------------------------------------------------- cameras


def check_cameras(max_index: int = 10) -> list[Check]:
    from vrfer.core.sources import camera_backends, probe_cameras

    apis = " then ".join(camera_backends())
    found = probe_cameras(max_index)
    if not found:
        fix = ("plug in a camera; if one is plugged in, check that /dev/video* exists (dmesg says why not)"
               if sys.platform.startswith("linux") else "plug in a camera, and close other programs using it")
        return [Check("cameras", "warn", f"none found (indices 0-{max_index - 1}, via {apis}); the demo, video "
                      "files and MJPEG streams still work", fix)]
    out = []
    for probe in found:
        where = f" ({probe.device})" if probe.device else ""
        if probe.info is None:
            out.append(Check(f"camera {probe.index}", "fail", f"{probe.name}{where}: {probe.problem}",
                             "close other programs using the camera; on Linux add yourself to the 'video' "
                             "group (sudo usermod -aG video $USER, then log in again)"))
        else:
            i = probe.info
            fps = f" @ {i.fps:g} fps" if i.fps else ""
            out.append(Check(f"camera {probe.index}", "ok",
                             f"{probe.name}{where} opens via {i.backend}: {i.width}x{i.height}{fps}; "
                             f"use --source {probe.index}"))
    return out


# ---------------------------------------------------------------- Qt


def _qt_command() -> list[str]:
    base = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "vrfer.cli.main"]
    return [*base, "doctor", "--probe-qt"]


def _probe_qt() -> int:
    """In the child: start Qt and say which platform plugin it loaded."""
    from PyQt6.QtCore import QT_VERSION_STR
    from PyQt6.QtWidgets import QApplication

    qapp = QApplication(sys.argv[:1])
    print(f"qt {QT_VERSION_STR} {qapp.platformName()}")
    return 0


def has_display(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return True  # Windows and macOS always have their window system
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def check_qt(timeout: float = 60.0) -> list[Check]:
    env = dict(os.environ)
    forced = env.get("QT_QPA_PLATFORM")
    headless = not forced and not has_display(env)
    if headless:
        env["QT_QPA_PLATFORM"] = "offscreen"  # the window cannot open; still check that Qt itself loads
    try:
        res = subprocess.run(_qt_command(), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [Check("qt", "fail", f"Qt did not start within {timeout:g} s", "run 'vrfer app' to see what it waits for")]
    words = res.stdout.split()
    if res.returncode != 0 or len(words) < 3 or words[0] != "qt":
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "plugin" in ln.lower()), lines[-1] if lines else f"exit {res.returncode}")
        fix = (f"install Qt's system libraries: sudo apt-get install {QT_LIBS_APT}"
               if sys.platform.startswith("linux") else "reinstall vrfer (PyQt6 is incomplete)")
        return [Check("qt", "fail", f"Qt cannot start: {_line(why)}", fix)]
    _, version, platform = words[:3]
    if headless:
        return [Check("qt", "warn", f"Qt {version} loads, but there is no display here (no DISPLAY or "
                      "WAYLAND_DISPLAY): the window cannot open; vrfer run and vrfer app --screenshot work",
                      "run vrfer app in a desktop session, or under xvfb-run")]
    return [Check("qt", "ok", f"Qt {version}, platform plugin '{platform}' loads")]


# ---------------------------------------------------------------- OSC


def port_has_listener(port: int) -> bool:
    """Whether a program holds UDP ``port`` on this machine: binding it here fails."""
    for host in ("127.0.0.1", "0.0.0.0"):  # Windows lets a wildcard and a loopback bind share a port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES) or getattr(exc, "winerror", None) in (10048, 10013):
                    return True
                raise
    return False


def check_osc(ports: tuple[tuple[str, int, str], ...] = OSC_PORTS) -> list[Check]:
    out = []
    for name, port, fix in ports:
        if port_has_listener(port):
            out.append(Check(f"osc {port}", "ok", f"a program listens on UDP {port} ({name}'s port)"))
        else:
            out.append(Check(f"osc {port}", "warn", f"nothing listens on UDP {port}: {name} is not running "
                             "(needed only for that avatar output)", fix))
    return out


# ---------------------------------------------------------------- OpenXR


def active_runtime_manifest(env: dict[str, str] | None = None) -> Path | None:
    """The active OpenXR runtime's manifest, found where the OpenXR loader looks for it."""
    env = os.environ if env is None else env
    if env.get("XR_RUNTIME_JSON"):
        return Path(env["XR_RUNTIME_JSON"])
    if sys.platform == "win32":
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Khronos\OpenXR\1") as key:
                return Path(winreg.QueryValueEx(key, "ActiveRuntime")[0])
        except OSError:
            return None
    config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    dirs = [config_home, *(env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":"), "/etc"]
    for folder in dirs:
        candidate = Path(folder) / "openxr" / "1" / "active_runtime.json"
        if folder and candidate.is_file():
            return candidate
    return None


OPENXR_FIX = "only needed for --openxr: install and activate an OpenXR runtime (SteamVR, Monado, WiVRn, Meta)"


def check_openxr() -> list[Check]:
    fix = OPENXR_FIX
    manifest = active_runtime_manifest()
    if manifest is None:
        out = [Check("openxr runtime", "warn", "no active OpenXR runtime", fix)]
    else:
        try:
            runtime = json.loads(manifest.read_text(encoding="utf-8"))["runtime"]
            library = str(runtime["library_path"])
            name = runtime.get("name") or Path(library).name
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return [Check("openxr runtime", "fail", f"{manifest} is not a readable runtime manifest ({_line(exc)})",
                          "reinstall or re-activate the OpenXR runtime")]
        # A bare file name is searched for by the loader; a path is relative to the manifest.
        if ("/" in library or "\\" in library) and not (manifest.parent / library).is_file():
            return [Check("openxr runtime", "fail", f"{name} ({manifest}): its library {library} is missing",
                          "reinstall or re-activate the OpenXR runtime")]
        out = [Check("openxr runtime", "ok", f"{name} ({manifest})")]
    if importlib.util.find_spec("xr") is None:
        out.append(Check("openxr session", "warn", "pyopenxr is not installed", "pip install 'vrfer[openxr]'"))
    elif manifest is None:
        out.append(Check("openxr session", "warn", "not tried: there is no runtime to open one on", fix))
    else:
        from vrfer.core.avatar.openxr_session import CompanionSession
        from vrfer.core.errors import VrferError

        try:
            session = CompanionSession().open()
            out.append(Check("openxr session", "ok", f"a {session.mode} session opens on {session.runtime}"))
            session.close()
        except VrferError as exc:
            out.append(Check("openxr session", "fail", _line(exc), "start the runtime's service (e.g. monado-service "
                             "or SteamVR) and run vrfer doctor again"))
    return out


def check_openxr_layer() -> list[Check]:
    """The native OpenXR layer's state: installed, disabled, opt-in, not installed (a warning: it is
    optional) or broken (a failure: games would load a layer that cannot work)."""
    from vrfer.core.avatar.openxr_layer import layer_status

    st = layer_status()
    level = {"installed": "ok", "opt-in": "ok", "disabled": "warn", "not installed": "warn"}.get(st.state, "fail")
    fix = "" if level == "ok" else "vrfer openxr install-layer"
    return [Check("openxr layer", level, _line(st.line()), fix)]


# ---------------------------------------------------------------- settings, profiles, logs


def check_settings() -> list[Check]:
    from vrfer.app.settings import load_settings

    loaded = load_settings(repair=False)  # look only: the app repairs a bad file on its next start
    if loaded.notice:
        return [Check("settings", "warn", f"{loaded.path}: {loaded.notice}",
                      "the app backs the file up and starts from the defaults on its next start")]
    state = "readable" if loaded.path.is_file() else "not written yet: the defaults are used"
    return [Check("settings", "ok", f"{loaded.path} ({state})")]


def check_folders() -> list[Check]:
    from vrfer.core.adapt import PROFILE_SUFFIX, profiles_dir

    folder = profiles_dir()
    count = len(list(folder.glob(f"*{PROFILE_SUFFIX}"))) if folder.is_dir() else 0
    out = [Check("profiles", "ok", f"{folder} ({count} profile{'s' if count != 1 else ''})")]
    log = paths.log_file()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        out.append(Check("log", "fail", f"{log} cannot be written ({exc.strerror or exc})",
                         "make the folder writable, or set VRFER_LOG_DIR to one that is"))
    else:
        out.append(Check("log", "ok", f"{log} (attach it to a bug report)"))
    return out
