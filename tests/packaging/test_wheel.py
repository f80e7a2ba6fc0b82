"""The wheel as a user gets it: built from the sources, installed into a fresh venv outside the
checkout (no editable install, no checkout on sys.path), then `vrfer run` and `vrfer app`.

The fresh venv gets vrfer from the wheel only (``pip install --no-deps``). Its heavy
dependencies (mediapipe, Qt, onnxruntime: about 1 GB) are not downloaded again: once vrfer is
installed, a ``.pth`` line appends this test environment's site-packages to the venv's path,
behind the venv's own. A ``.pth`` line adds a folder but does not run that folder's own
``.pth`` files, so the checkout's editable-install hook stays out.
"""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from installed import REPO, check_demo_run, check_screenshot, clean_env, run_program, source_copy

GENERIC = {"app", "core", "cli", "training", "assets"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = source_copy(tmp_path_factory.mktemp("src") / "vrfer")
    out = tmp_path_factory.mktemp("wheels")
    # No build isolation: setuptools is already here, and the build needs no network.
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-w", str(out), "-q"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (whl,) = out.glob("vrfer-*.whl")
    return whl


def test_wheel_holds_the_assets_and_one_import_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"vrfer", "vrfer-0.1.0.dist-info"}
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert {"vrfer/app", "vrfer/core", "vrfer/core/avatar", "vrfer/cli", "vrfer/training", "vrfer/assets", "vrfer/bench"} <= packages
    for asset in ("vrfer/assets/models/student.onnx", "vrfer/assets/models/student.md",
                  "vrfer/assets/models/headset_locator.onnx", "vrfer/assets/face_template.json",
                  "vrfer/assets/blendshapes/unified_v2.toml", "vrfer/assets/blendshapes/babble.toml",
                  "vrfer/training/configs/student.toml"):
        assert asset in names


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_the_demo_and_the_app(wheel: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # From outside the checkout: pip would take a checkout's vrfer.egg-info for an installed vrfer.
    res = run_program([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                       str(wheel)], cwd=home, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    assert not GENERIC & {p.name for p in site.iterdir()}  # nothing generic in site-packages
    heavy = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_vrfer_test_dependencies.pth").write_text("\n".join(sorted(heavy)) + "\n")

    where = run_program([str(python), "-c", "import json, sys, vrfer.core.paths as p; "
                         "print(json.dumps([p.__file__, str(p.ASSETS_DIR), sys.path]))"], cwd=home, env=env)
    assert where.returncode == 0, where.stderr[-3000:]
    module, assets, path = json.loads(where.stdout)
    assert Path(module).is_relative_to(site) and Path(assets) == site / "vrfer" / "assets"
    # No checkout on sys.path. The linked dependency folders may lie inside it (CI's .venv does);
    # they hold packages only, and .pth files in them are not run from a linked folder.
    linked = {Path(h).resolve() for h in heavy}
    assert not [p for p in path if p and Path(p).resolve().is_relative_to(REPO) and Path(p).resolve() not in linked]
    for name in sorted(GENERIC - {"assets"}):  # the old top-level names are gone
        probe = run_program([str(python), "-c", f"import {name}"], cwd=home, env=env)
        assert f"No module named '{name}'" in probe.stderr

    program = [str(venv / "bin" / "vrfer")]
    check_demo_run(program, cwd=home, env=env)
    check_screenshot(program, cwd=home, env=env, out=home / "shot.png")
