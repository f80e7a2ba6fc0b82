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
import logging

from vrfer.cli.argtypes import rate_hz, udp_port

log = logging.getLogger("vrfer.avatar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("avatar sinks (use the VRChat sink or the VRCFaceTracking sink, not both)")
    g.add_argument("--osc-vrchat", nargs="?", const="127.0.0.1:9000", metavar="HOST:PORT",
                   help="send Unified Expressions v2 parameters to VRChat (default 127.0.0.1:9000)")
    g.add_argument("--osc-vrchat-ft", action="store_true",
                   help="use the /avatar/parameters/FT/v2/ prefix")
    g.add_argument("--osc-vrchat-listen", nargs="?", const=9001, type=udp_port, metavar="PORT",
                   help="listen for /avatar/change and re-send everything (default port 9001; "
                        "not while VRCFaceTracking runs, which owns 9001)")
    g.add_argument("--osc-vrcft", nargs="?", const="127.0.0.1:8888", metavar="HOST:PORT",
                   help="send the 45 Babble-protocol shapes to VRCFaceTracking (default 127.0.0.1:8888)")
    g.add_argument("--osc-rate", type=rate_hz, default=60.0, metavar="HZ", help="OSC send-rate cap (default 60)")
    g.add_argument("--openxr", action="store_true",
                   help="OpenXR companion session (neutral avatar while the headset is off) and "
                        "XR_FB_face_tracking2 weights on the shared-memory channel")


add_sink_arguments = add_arguments  # the name the avatar issue asked for


def make_sinks(args: argparse.Namespace) -> list:
    """Sinks for the given flags. A bad value raises ConfigError; an unreachable target only warns."""
    from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_PORT, SinkTiming, VRChatSink, VRCFTSink, parse_target

    sinks: list = []
    presence = None
    if getattr(args, "openxr", False):
        from vrfer.core.avatar.openxr_hook import OpenXRHook

        hook = OpenXRHook()
        presence = hook.is_present
        sinks.append(hook)
    timing = SinkTiming(rate_hz=getattr(args, "osc_rate", 60.0))
    try:
        if getattr(args, "osc_vrchat", None):
            host, port = parse_target(args.osc_vrchat, VRCHAT_PORT)
            sinks.append(VRChatSink(host, port, ft_prefix=args.osc_vrchat_ft, listen_port=args.osc_vrchat_listen,
                                    timing=timing, presence=presence))
        if getattr(args, "osc_vrcft", None):
            host, port = parse_target(args.osc_vrcft, VRCFT_BABBLE_PORT)
            sinks.append(VRCFTSink(host, port, timing=timing, presence=presence))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    if getattr(args, "osc_vrchat", None) and getattr(args, "osc_vrcft", None):
        log.warning("both --osc-vrchat and --osc-vrcft are on: VRCFaceTracking also forwards to VRChat, "
                    "so the avatar may flicker; use one of them")
    return sinks
