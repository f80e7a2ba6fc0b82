"""``vrfer openxr``: install, remove or inspect the native implicit OpenXR layer that gives
every OpenXR application vrfer's face tracking (see docs/avatar.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from vrfer.core.avatar import openxr_layer as layer


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("openxr", help="install or remove the OpenXR face-tracking layer for all games",
                              description="Manage vrfer's implicit OpenXR API layer, which adds "
                                          "XR_FB_face_tracking2 and XR_HTC_facial_tracking (lip) to every "
                                          "OpenXR application and serves them from a running `vrfer run --openxr`.")
    sub = p.add_subparsers(dest="openxr_command", metavar="ACTION", required=True)
    inst = sub.add_parser("install-layer", help="copy the layer into the user's data folder and register it",
                          description=f"Write the manifest to {layer.implicit_layer_dir()} (honours "
                                      f"XDG_DATA_HOME). Set {layer.DISABLE_ENV}=1 to keep a game from loading it.")
    inst.add_argument("--library", type=Path, default=None, metavar="SO",
                      help=f"the built layer (default: {layer.built_library()}, from make -C openxr_layer)")
    inst.add_argument("--opt-in", action="store_true",
                      help=f"load the layer only into games started with {layer.ENABLE_ENV}=1")
    inst.set_defaults(func=install)
    sub.add_parser("uninstall-layer", help="remove the manifest and the installed library").set_defaults(func=uninstall)
    sub.add_parser("layer-status", help="say whether games will load the layer").set_defaults(func=status)
    return p


def install(args: argparse.Namespace) -> int:
    done = layer.install_layer(args.library, opt_in=args.opt_in)
    print(f"installed {done.library}\nregistered {done.manifest}")
    print(layer.layer_status().line())
    return 0


def uninstall(args: argparse.Namespace) -> int:
    removed = layer.uninstall_layer()
    print("\n".join(f"removed {p}" for p in removed) if removed else "the OpenXR face layer was not installed")
    return 0


def status(args: argparse.Namespace) -> int:
    s = layer.layer_status()
    print(s.line())
    return 0 if s.state != "broken" else 1
