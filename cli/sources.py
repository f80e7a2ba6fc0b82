"""``vrfer sources``: the cameras that open here, and the other kinds of ``--source``."""
from __future__ import annotations

import argparse

from vrfer.core import paths
from vrfer.core.source_spec import IMAGE_EXTENSIONS
from vrfer.core.sources import camera_backends, probe_cameras


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sources", help="list the cameras that can be opened and the other sources",
                              description="Try camera indices 0..N-1 and list those that open and deliver "
                                          "a frame, then show the other kinds of --source with examples.")
    p.add_argument("--max-index", type=int, default=10, metavar="N",
                   help="try camera indices below N (default 10)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    max_index = max(1, int(getattr(args, "max_index", 10)))
    probes = probe_cameras(max_index)
    if probes:
        print("cameras:")
        for probe in probes:
            device = f" ({probe.device})" if probe.device else ""
            cam = probe.info
            if cam is None:  # found, but it did not open: say why, so the user can fix it
                print(f"  --source {probe.index:<3} {probe.name}{device}: {probe.problem}")
                continue
            fps = f" @ {cam.fps:g} fps" if cam.fps else ""
            print(f"  --source {cam.index:<3} {cam.name}{device}, {cam.width}x{cam.height}{fps}")
    else:
        print(f"no cameras could be opened (tried indices 0-{max_index - 1})")
    if paths.ferplus_available():
        demo = f"FER+ Test faces from {paths.ferplus_dir()}, with their labels"
    else:
        demo = f"a synthetic cartoon face: no FER+ data at {paths.ferplus_dir()} (set VRFER_FERPLUS)"
    print("other sources:")
    rows = [
        ("--source 0", f"a camera by index (here via {' then '.join(camera_backends())}); a lost camera is reopened"),
        ("--source clip.mp4", "a video file: every frame, in order (add --realtime to pace it)"),
        ("--source frames/", f"a folder of images, sorted by name ({', '.join(IMAGE_EXTENSIONS)})"),
        ("--source face.png", "one image"),
        ("--source http://192.168.4.1:81/stream", "an MJPEG stream, e.g. an ESP32 mouth camera"),
        ("--source demo", demo),
    ]
    width = max(len(r[0]) for r in rows)
    for example, what in rows:
        print(f"  {example:<{width}}  {what}")
    return 0
