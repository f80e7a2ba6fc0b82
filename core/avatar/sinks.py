"""The one place avatar sinks are built: ``make_sinks(AvatarConfig)`` for ``vrfer run`` and the app.

A sink is anything with the ``Sink`` shape (``core.avatar.status``): ``send(state)`` on the
pipeline thread, never blocking; ``status()``; ``close()``. To add one, give it that shape
and build it here from a new ``AvatarConfig`` field; both front ends then offer it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from vrfer.core.avatar.status import Sink

log = logging.getLogger("vrfer.avatar")

DEFAULT_RATE_HZ = 60.0


@dataclass(frozen=True)
class AvatarConfig:
    """Which sinks to run. A target is ``HOST:PORT`` (``core.avatar.osc.parse_target``); None is off."""

    vrchat: str | None = None  # Unified Expressions v2 to VRChat, e.g. 127.0.0.1:9000
    vrchat_ft: bool = False  # ... under /avatar/parameters/FT/v2/
    vrchat_listen: int | None = None  # re-send everything on /avatar/change heard on this port
    vrcft: str | None = None  # Babble protocol to VRCFaceTracking, e.g. 127.0.0.1:8888
    rate_hz: float = DEFAULT_RATE_HZ  # OSC send-rate cap
    openxr: bool = False  # companion session (headset presence) + face-weights provider


def check_avatar(cfg: AvatarConfig) -> None:
    """ConfigError for a bad target or rate, before anything is opened."""
    from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_PORT, SinkTiming, parse_target

    SinkTiming(rate_hz=cfg.rate_hz)
    if cfg.vrchat:
        parse_target(cfg.vrchat, VRCHAT_PORT)
    if cfg.vrcft:
        parse_target(cfg.vrcft, VRCFT_BABBLE_PORT)


def make_sinks(cfg: AvatarConfig) -> list[Sink]:
    """The sinks ``cfg`` asks for. A bad value raises ConfigError; an unreachable target only warns.

    The OSC sinks are imported here, not at the top, so the OpenXR hook also runs where
    python-osc is absent (the Monado test chroot)."""
    check_avatar(cfg)
    from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_PORT, SinkTiming, VRChatSink, VRCFTSink, parse_target

    sinks: list[Sink] = []
    presence = None
    try:
        if cfg.openxr:
            from vrfer.core.avatar.openxr_hook import OpenXRHook

            hook = OpenXRHook()
            presence = hook.is_present
            sinks.append(hook)
        timing = SinkTiming(rate_hz=cfg.rate_hz)
        if cfg.vrchat:
            host, port = parse_target(cfg.vrchat, VRCHAT_PORT)
            sinks.append(VRChatSink(host, port, ft_prefix=cfg.vrchat_ft, listen_port=cfg.vrchat_listen,
                                    timing=timing, presence=presence))
        if cfg.vrcft:
            host, port = parse_target(cfg.vrcft, VRCFT_BABBLE_PORT)
            sinks.append(VRCFTSink(host, port, timing=timing, presence=presence))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    if cfg.vrchat and cfg.vrcft:
        log.warning("both the VRChat and the VRCFaceTracking sink are on: VRCFaceTracking also forwards to "
                    "VRChat, so the avatar may flicker; use one of them")
    return sinks
