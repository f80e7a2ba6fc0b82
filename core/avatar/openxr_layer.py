"""Install, remove and inspect vrfer's native implicit OpenXR API layer (``openxr_layer/``).

The layer is a shared library that the OpenXR loader injects into every OpenXR application of
the user. It adds ``XR_FB_face_tracking2`` and ``XR_HTC_facial_tracking`` (lip) and serves them
from the face-weights block (``face_ipc.py``). Installing copies the library into vrfer's data
folder (so a rebuilt or deleted checkout cannot break running games) and writes the loader's
manifest into the user's implicit-layer folder:

    Linux    $XDG_DATA_HOME/openxr/1/api_layers/implicit.d/   (~/.local/share/... by default)
    Windows  a DWORD value 0 named after the manifest's path under
             HKEY_CURRENT_USER\\Software\\Khronos\\OpenXR\\1\\ApiLayers\\Implicit  (not done here)

The loader skips the layer while ``DISABLE_VRFER_FACE_LAYER`` is set; installed with
``opt_in=True`` it loads the layer only while ``ENABLE_VRFER_FACE_LAYER`` is set.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vrfer.core.errors import SinkError
from vrfer.core.paths import REPO_ROOT, user_dirs

LAYER_NAME = "XR_APILAYER_VRFER_face_tracking"
LIBRARY_NAME = "libXrApiLayer_vrfer_face.so"
MANIFEST_NAME = "vrfer_face_layer.json"
DISABLE_ENV = "DISABLE_VRFER_FACE_LAYER"
ENABLE_ENV = "ENABLE_VRFER_FACE_LAYER"
EXTENSIONS = (("XR_FB_face_tracking2", 1), ("XR_HTC_facial_tracking", 3))
_NEGOTIATE = b"xrNegotiateLoaderApiLayerInterface"
WINDOWS_KEY = r"HKEY_CURRENT_USER\Software\Khronos\OpenXR\1\ApiLayers\Implicit"


def built_library() -> Path:
    """Where ``make -C openxr_layer`` puts the library in a checkout."""
    return REPO_ROOT / "openxr_layer" / "build" / LIBRARY_NAME


def implicit_layer_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "openxr" / "1" / "api_layers" / "implicit.d"


def manifest_path() -> Path:
    return implicit_layer_dir() / MANIFEST_NAME


def installed_library_path() -> Path:
    return Path(user_dirs().user_data_dir) / "openxr" / LIBRARY_NAME


def manifest(library: Path, opt_in: bool = False) -> dict:
    """The loader's JSON for the layer (file format 1.0.0)."""
    layer = {
        "name": LAYER_NAME,
        "library_path": str(library),
        "api_version": "1.0",
        "implementation_version": "1",
        "description": "vrfer: face tracking from a webcam (XR_FB_face_tracking2, XR_HTC_facial_tracking lip)",
        "instance_extensions": [{"name": n, "extension_version": str(v)} for n, v in EXTENSIONS],
        "functions": {"xrNegotiateLoaderApiLayerInterface": "xrNegotiateLoaderApiLayerInterface"},
        "disable_environment": DISABLE_ENV,
    }
    if opt_in:
        layer["enable_environment"] = ENABLE_ENV
    return {"file_format_version": "1.0.0", "api_layer": layer}


def check_library(path: Path) -> None:
    """Refuse anything but an ELF shared object that exports the negotiation entry point.
    The check reads bytes only: the file is never loaded, so a hostile one runs nothing."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SinkError(f"cannot read the OpenXR layer library {path}: {e.strerror} "
                        f"(build it with: make -C openxr_layer)") from None
    if data[:4] != b"\x7fELF" or data[16:18] != b"\x03\x00":  # ELF, e_type ET_DYN (little-endian)
        raise SinkError(f"{path} is not a shared library (an ELF .so)")
    if _NEGOTIATE not in data:
        raise SinkError(f"{path} is not an OpenXR API layer: it has no {_NEGOTIATE.decode()}")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # A running game keeps the old inode; the loader never sees a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


@dataclass(frozen=True)
class LayerInstall:
    manifest: Path
    library: Path


def install_layer(library: Path | None = None, opt_in: bool = False) -> LayerInstall:
    """Copy the library into vrfer's data folder and write the implicit-layer manifest."""
    if not sys.platform.startswith("linux"):
        raise SinkError(f"installing the OpenXR layer is done only on Linux; on Windows the manifest is "
                        f"registered under {WINDOWS_KEY} (see docs/avatar.md)")
    source = Path(library) if library is not None else built_library()
    check_library(source)
    lib, man = installed_library_path(), manifest_path()
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        man.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(lib, source.read_bytes(), 0o755)
        _write_atomically(man, (json.dumps(manifest(lib, opt_in), indent=2) + "\n").encode(), 0o644)
    except OSError as e:
        raise SinkError(f"cannot install the OpenXR layer: {e.strerror}: {e.filename}") from None
    return LayerInstall(man, lib)


def uninstall_layer() -> list[Path]:
    """Remove the manifest and the installed library; returns what was removed."""
    removed = []
    for path in (manifest_path(), installed_library_path()):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise SinkError(f"cannot remove {path}: {e.strerror}") from None
    return removed


@dataclass(frozen=True)
class LayerStatus:
    state: str  # "not installed" | "installed" | "disabled" | "opt-in" | "broken"
    detail: str
    manifest: Path
    library: Path | None

    def line(self) -> str:
        return f"OpenXR face layer: {self.state} ({self.detail})"


def layer_status(environ: dict[str, str] | None = None) -> LayerStatus:
    """What the OpenXR loader will do with the layer for a game started from this environment."""
    env = os.environ if environ is None else environ
    man = manifest_path()
    if not man.is_file():
        return LayerStatus("not installed", f"no {man}; run: vrfer openxr install-layer", man, None)
    try:
        layer = json.loads(man.read_text())["api_layer"]
        lib = Path(layer["library_path"])
        if layer.get("name") != LAYER_NAME:
            raise ValueError(f"names layer {layer.get('name')!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return LayerStatus("broken", f"{man} is unreadable ({' '.join(str(e).split())}); "
                           "run: vrfer openxr install-layer", man, None)
    try:
        check_library(lib)
    except SinkError as e:
        return LayerStatus("broken", f"{e}; run: vrfer openxr install-layer", man, lib)
    if env.get(layer.get("disable_environment", DISABLE_ENV)):
        return LayerStatus("disabled", f"${layer.get('disable_environment', DISABLE_ENV)} is set", man, lib)
    opt_in = layer.get("enable_environment")
    if opt_in and not env.get(opt_in):
        return LayerStatus("opt-in", f"loaded only for games started with {opt_in}=1", man, lib)
    return LayerStatus("installed", f"{man} -> {lib}", man, lib)
