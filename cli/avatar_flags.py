"""``vrfer run`` flags for the avatar sinks (listed in cli.run.SINK_MODULES).

    --osc-vrchat [HOST:PORT]        Unified Expressions v2 to VRChat (default 127.0.0.1:9000)
    --osc-vrchat-ft                 ... as /avatar/parameters/FT/v2/<Name>
    --osc-vrchat-listen [PORT]      re-send all on /avatar/change (off; 9001 is VRCFaceTracking's)
    --osc-vrcft [HOST:PORT]         Babble protocol to VRCFaceTracking (default 127.0.0.1:8888)
    --osc-rate HZ                   OSC send-rate cap (default 60)
    --openxr                        companion session (headset presence) + face-weights provider
"""
from __future__ import annotations

import argparse

from vrfer.cli.argtypes import rate_hz, udp_port
from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_LISTEN_PORT, VRCHAT_PORT
from vrfer.core.avatar.sinks import DEFAULT_RATE_HZ, AvatarConfig
from vrfer.core.avatar.sinks import make_sinks as core_make_sinks
from vrfer.core.avatar.status import Sink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("avatar sinks (use the VRChat sink or the VRCFaceTracking sink, not both)")
    g.add_argument("--osc-vrchat", nargs="?", const=f"127.0.0.1:{VRCHAT_PORT}", metavar="HOST:PORT",
                   help=f"send Unified Expressions v2 parameters to VRChat (default 127.0.0.1:{VRCHAT_PORT})")
    g.add_argument("--osc-vrchat-ft", action="store_true",
                   help="use the /avatar/parameters/FT/v2/ prefix")
    g.add_argument("--osc-vrchat-listen", nargs="?", const=VRCHAT_LISTEN_PORT, type=udp_port, metavar="PORT",
                   help=f"listen for /avatar/change and re-send everything (default port {VRCHAT_LISTEN_PORT}; "
                        f"not while VRCFaceTracking runs, which owns {VRCHAT_LISTEN_PORT})")
    g.add_argument("--osc-vrcft", nargs="?", const=f"127.0.0.1:{VRCFT_BABBLE_PORT}", metavar="HOST:PORT",
                   help="send the 45 Babble-protocol shapes to VRCFaceTracking "
                        f"(default 127.0.0.1:{VRCFT_BABBLE_PORT})")
    g.add_argument("--osc-rate", type=rate_hz, default=DEFAULT_RATE_HZ, metavar="HZ",
                   help=f"OSC send-rate cap (default {DEFAULT_RATE_HZ:g})")
    g.add_argument("--openxr", action="store_true",
                   help="OpenXR companion session (neutral avatar while the headset is off) and "
                        "XR_FB_face_tracking2 weights on the shared-memory channel")


def avatar_config(args: argparse.Namespace) -> AvatarConfig:
    """The flags as the core's sink configuration (the app builds the same from its settings)."""
    return AvatarConfig(vrchat=getattr(args, "osc_vrchat", None), vrchat_ft=getattr(args, "osc_vrchat_ft", False),
                        vrchat_listen=getattr(args, "osc_vrchat_listen", None), vrcft=getattr(args, "osc_vrcft", None),
                        rate_hz=getattr(args, "osc_rate", DEFAULT_RATE_HZ), openxr=getattr(args, "openxr", False))


def make_sinks(args: argparse.Namespace) -> list[Sink]:
    """Sinks for the given flags. A bad value raises ConfigError; an unreachable target only warns."""
    return core_make_sinks(avatar_config(args))
