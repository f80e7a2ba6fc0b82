"""``vrfer doctor``: every check with the real pieces of this machine, and with missing or broken ones."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vrfer.cli import doctor
from vrfer.cli.doctor import Check, check_osc, check_qt, format_check
from vrfer.cli.main import main

REPO = Path(__file__).resolve().parents[2]
ALL_CHECKS = ["python", "packages", "model", "headset locator", "mediapipe", "far faces", "cameras", "qt", "osc 9000",
              "osc 8888", "openxr runtime", "openxr session", "openxr layer", "settings", "profiles", "log"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A user with no settings, profiles or OpenXR runtime yet, and a log folder of their own."""
    for name, sub in (("VRFER_CONFIG_DIR", "config"), ("VRFER_PROFILES", "profiles"), ("VRFER_LOG_DIR", "logs")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg-system"))
    monkeypatch.delenv("XR_RUNTIME_JSON", raising=False)
    monkeypatch.delenv("VRFER_MODEL", raising=False)
    return tmp_path


def _doctor(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    code = main(["doctor", "--json", "--max-index", "2", *args])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, {r["name"]: r for r in rows}


def test_doctor_passes_on_this_machine_with_every_check(capsys, home):
    code, rows = _doctor(capsys)
    # one line per camera where there are cameras, else one "cameras" line
    assert list(dict.fromkeys("cameras" if n.startswith("camera ") else n for n in rows)) == ALL_CHECKS
    assert code == 0, [r for r in rows.values() if r["status"] == "fail"]
    assert rows["model"]["status"] == "ok" and "8 classes" in rows["model"]["detail"]
    assert "metadata checked" in rows["model"]["detail"] and "sha256" in rows["model"]["detail"]
    assert rows["mediapipe"]["status"] == "ok" and rows["far faces"]["status"] == "ok"
    assert rows["packages"]["status"] == "ok" and "mediapipe 0.10.21" in rows["packages"]["detail"]
    assert rows["settings"]["detail"] == f"{home / 'config' / 'settings.json'} (not written yet: the defaults are used)"
    assert rows["profiles"]["detail"] == f"{home / 'profiles'} (0 profiles)"
    assert rows["log"]["detail"] == f"{home / 'logs' / 'vrfer.log'} (attach it to a bug report)"
    assert rows["openxr runtime"] == {"name": "openxr runtime", "status": "warn", "detail": "no active OpenXR runtime",
                                      "fix": doctor.OPENXR_FIX}
    for row in rows.values():  # every line that is not ok says what to do
        assert row["status"] in ("ok", "warn", "fail")
        assert row["status"] == "ok" or row["fix"]
    # ... and the report went to the log file that it names, for a bug report
    log = (home / "logs" / "vrfer.log").read_text()
    assert "ok model: vrfer-student" in log and "vrfer 0.1.0 doctor" in log


def test_doctor_fails_on_a_missing_model_and_exits_1(capsys, home):
    missing = home / "missing.onnx"
    code = main(["doctor", "--max-index", "1", "--model", str(missing)])
    out = capsys.readouterr().out
    assert code == 1
    assert (f"✗ model: {missing}: model file not found\n"
            "    fix: reinstall vrfer, or pass --model PATH to an exported vrfer model\n") in out


def test_doctor_fails_on_a_model_that_is_not_a_vrfer_model(capsys, home, make_onnx):
    foreign = make_onnx("foreign.onnx", meta={"author": "someone"})
    code, rows = _doctor(capsys, "--model", str(foreign))
    assert code == 1
    assert rows["model"]["status"] == "fail"
    assert rows["model"]["detail"] == f"{foreign}: not a vrfer model (metadata lacks vrfer.classes)"


def test_doctor_reports_a_corrupt_settings_file_and_leaves_it_alone(capsys, home):
    settings = home / "config" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text("{not json")
    code, rows = _doctor(capsys)
    assert code == 0
    assert rows["settings"]["status"] == "warn"
    assert rows["settings"]["detail"] == f"{settings}: settings ignored, using defaults: settings.json is not valid JSON"
    assert settings.read_text() == "{not json"  # looked at, not repaired


def test_doctor_fails_when_the_log_cannot_be_written(capsys, home, monkeypatch):
    blocker = home / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("VRFER_LOG_DIR", str(blocker / "logs"))  # under a file: no folder can be made there
    code, rows = _doctor(capsys)
    assert code == 1
    assert rows["log"]["status"] == "fail"
    assert rows["log"]["detail"] == f"{blocker / 'logs' / 'vrfer.log'} cannot be written (Not a directory)"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_osc_check_sees_a_real_listener_and_its_absence():
    port = _free_udp_port()
    ports = (("Test target", port, "start the test target"),)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", port))
        assert check_osc(ports) == [Check(f"osc {port}", "ok", f"a program listens on UDP {port} (Test target's port)")]
    assert check_osc(ports) == [Check(f"osc {port}", "warn", f"nothing listens on UDP {port}: Test target is not "
                                      "running (needed only for that avatar output)", "start the test target")]


def test_osc_check_sees_a_listener_on_all_interfaces():
    port = _free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("0.0.0.0", port))
        assert doctor.port_has_listener(port)


def test_qt_check_loads_the_offscreen_plugin(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    (check,) = check_qt()
    assert check.status == "ok"
    assert check.detail.startswith("Qt 6.") and check.detail.endswith("platform plugin 'offscreen' loads")


def test_qt_check_fails_in_one_line_on_a_missing_platform_plugin(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")
    (check,) = check_qt()
    assert check.status == "fail"
    assert check.detail.startswith("Qt cannot start: ") and "no-such-platform" in check.detail
    assert "\n" not in check.detail
    assert check.fix.startswith("install Qt's system libraries: sudo apt-get install libegl1")


def test_qt_check_without_a_display_warns_that_only_headless_use_works(monkeypatch):
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    (check,) = check_qt()
    assert check.status == "warn"
    assert "there is no display here" in check.detail and check.fix


def _manifest(folder: Path, name: str = "Test runtime", library: str = "libtest_runtime.so") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "active_runtime.json"
    path.write_text(json.dumps({"file_format_version": "1.0.0", "runtime": {"name": name, "library_path": library}}))
    return path


def test_active_runtime_manifest_is_found_where_the_loader_looks(tmp_path):
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_DIRS": str(tmp_path / "etc-xdg")}
    assert doctor.active_runtime_manifest(env) is None
    system = _manifest(tmp_path / "etc-xdg" / "openxr" / "1")
    assert doctor.active_runtime_manifest(env) == system
    user = _manifest(tmp_path / "home" / ".config" / "openxr" / "1")
    assert doctor.active_runtime_manifest(env) == user  # the user's choice wins
    assert doctor.active_runtime_manifest({**env, "XR_RUNTIME_JSON": "/x/rt.json"}) == Path("/x/rt.json")


def test_openxr_check_reports_a_runtime_whose_library_is_missing(home, monkeypatch):
    manifest = _manifest(home / "rt", library="./libgone.so")
    monkeypatch.setenv("XR_RUNTIME_JSON", str(manifest))
    checks = doctor.check_openxr()
    assert checks[0] == Check("openxr runtime", "fail", f"Test runtime ({manifest}): its library ./libgone.so is "
                              "missing", "reinstall or re-activate the OpenXR runtime")


def test_openxr_check_fails_when_the_runtime_does_not_load(home, monkeypatch):
    pytest.importorskip("xr", reason="pyopenxr (the openxr extra) is not installed")
    manifest = _manifest(home / "rt", library="libvrfer_no_such_runtime.so")  # searched for, never found
    monkeypatch.setenv("XR_RUNTIME_JSON", str(manifest))
    runtime, session = doctor.check_openxr()
    assert runtime == Check("openxr runtime", "ok", f"Test runtime ({manifest})")
    assert session.status == "fail"
    assert session.detail == "no OpenXR runtime is available (RuntimeUnavailableError)"


def test_openxr_check_reports_a_manifest_that_is_not_json(home, monkeypatch):
    bad = home / "rt.json"
    bad.write_text("<xml/>")
    monkeypatch.setenv("XR_RUNTIME_JSON", str(bad))
    (check,) = doctor.check_openxr()
    assert check.status == "fail" and check.detail.startswith(f"{bad} is not a readable runtime manifest (")


@pytest.mark.parametrize("encoding, first", [("utf-8", "✗ model: gone"), ("cp1252", "XX model: gone")])
def test_format_check_falls_back_to_ascii_where_the_console_cannot_print_the_marks(encoding, first):
    text = format_check(Check("model", "fail", "gone", "reinstall"), encoding)
    assert text == f"{first}\n    fix: reinstall"
    text.encode(encoding)


def test_doctor_command_runs_as_a_program(home):
    env = dict(os.environ, PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    res = subprocess.run([sys.executable, "-m", "vrfer.cli.main", "doctor", "--max-index", "1"], cwd=home, env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if not ln.startswith("    fix: ")]
    names = [ln.split(":")[0][2:] for ln in lines]
    assert list(dict.fromkeys("cameras" if n.startswith("camera ") else n for n in names)) == ALL_CHECKS
    assert lines[-1] == f"✓ log: {home / 'logs' / 'vrfer.log'} (attach it to a bug report)"


def test_doctor_reports_the_openxr_layer_state(tmp_path, monkeypatch):
    from vrfer.cli.doctor import check_openxr_layer

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    (check,) = check_openxr_layer()
    assert check.status == "warn" and "not installed" in check.detail and check.fix == "vrfer openxr install-layer"
    manifest = tmp_path / "openxr" / "1" / "api_layers" / "implicit.d"
    manifest.mkdir(parents=True)
    from vrfer.core.avatar.openxr_layer import manifest_path

    manifest_path().write_text("{not json")
    (check,) = check_openxr_layer()
    assert check.status == "fail" and "broken" in check.detail
