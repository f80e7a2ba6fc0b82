"""The OpenXR companion session and headset presence, for ``core.avatar.openxr_hook``.

- ``CompanionSession``: headless where the runtime offers ``XR_MND_headless``, else an overlay
  where it offers ``XR_EXTX_overlay``, else "not supported by this runtime". It follows the
  session state and locates the head (VIEW in LOCAL) at "now" (headless sessions have no frame
  loop, so "now" comes from ``XR_KHR_convert_timespec_time``).
- ``PresenceTracker``: the user counts as present while the session is running in a present
  state (FOCUSED for headless; VISIBLE or FOCUSED for an overlay, which normally never has
  focus), the head pose is tracked, and the head has moved within ``still_s``; a headset
  lying on a desk is perfectly still.

pyopenxr (``xr``) is imported on first use (``_xr``), so this module imports anywhere.
"""
from __future__ import annotations

import ctypes
import logging
import math
import time
from dataclasses import dataclass

from vrfer.core.errors import SinkError

log = logging.getLogger("vrfer.avatar")

HEADLESS = "XR_MND_headless"
OVERLAY = "XR_EXTX_overlay"
CONVERT_TIME = "XR_KHR_convert_timespec_time"


def _xr():
    """pyopenxr, imported on first use."""
    try:
        import xr
    except ImportError:
        raise SinkError("the OpenXR hook needs pyopenxr: pip install 'vrfer[openxr]'") from None
    return xr


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def runtime_extensions() -> set[str]:
    """Instance extensions the installed runtime (plus enabled layers) offers."""
    xr = _xr()
    try:
        return {_name(e.extension_name) for e in xr.enumerate_instance_extension_properties()}
    except xr.exception.XrException as e:
        raise SinkError(f"no OpenXR runtime is available ({type(e).__name__})") from None


@dataclass(frozen=True)
class HeadPose:
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]  # x, y, z, w
    tracked: bool  # orientation valid and tracked


class PresenceTracker:
    """Pure logic: (session state, head pose, time) -> is the user in the headset?"""

    def __init__(self, present_states: frozenset[str] = frozenset({"FOCUSED"}), still_s: float = 20.0,
                 move_m: float = 5e-4, turn_rad: float = 2e-3) -> None:
        self.present_states = present_states
        self.still_s, self.move_m, self.turn_rad = still_s, move_m, turn_rad
        self._anchor: HeadPose | None = None
        self._moved_at: float | None = None
        self.reason = "no session yet"

    def update(self, now: float, state: str, pose: HeadPose | None) -> bool:
        if state not in self.present_states:
            self.reason = f"session is {state}"
            return False
        if pose is None or not pose.tracked:
            self.reason = "head is not tracked"
            self._anchor = None
            return False
        if self._anchor is None or _moved(self._anchor, pose, self.move_m, self.turn_rad):
            self._anchor, self._moved_at = pose, now
        if now - self._moved_at > self.still_s:
            self.reason = f"head still for over {self.still_s:g} s (headset off?)"
            return False
        self.reason = "present"
        return True


def _moved(a: HeadPose, b: HeadPose, move_m: float, turn_rad: float) -> bool:
    if math.dist(a.position, b.position) > move_m:
        return True
    dot = abs(sum(x * y for x, y in zip(a.orientation, b.orientation)))
    return 2.0 * math.acos(min(1.0, dot)) > turn_rad


@dataclass(frozen=True)
class SessionSnapshot:
    state: str  # XrSessionState name: IDLE, READY, SYNCHRONIZED, VISIBLE, FOCUSED, STOPPING, ...
    pose: HeadPose | None
    present: bool
    reason: str  # why present is what it is, for the status line
    ended: bool  # EXITING or LOSS_PENDING: the session is over; close and open anew later


class CompanionSession:
    """A session that renders nothing and watches the head. One per process (loader limit)."""

    def __init__(self, app_name: str = "vrfer", mode: str = "auto", *, still_s: float = 20.0) -> None:
        if mode not in ("auto", "headless", "overlay"):
            raise SinkError(f"OpenXR session mode must be auto, headless or overlay, got {mode!r}")
        self.requested_mode, self.app_name = mode, app_name
        self.mode: str | None = None
        self.runtime = ""
        self.state = "UNKNOWN"
        self.states_seen: list[str] = []
        self._still_s = still_s
        self._xr = None
        self.instance = self.session = self._local = self._view = None
        self._to_xrtime = None
        self._running = False

    def open(self) -> CompanionSession:
        xr = self._xr = _xr()
        offered = runtime_extensions()
        mode = self.requested_mode
        if mode == "auto":
            mode = "headless" if HEADLESS in offered else "overlay" if OVERLAY in offered else None
        needed = {"headless": [HEADLESS], "overlay": [OVERLAY], None: []}[mode]
        if mode is None or any(e not in offered for e in needed):
            raise SinkError(f"a companion session is not supported by this runtime "
                            f"(it offers neither {HEADLESS} nor {OVERLAY})" if mode is None or
                            self.requested_mode == "auto" else
                            f"the OpenXR runtime does not offer {needed[0]} ({mode} session)")
        if CONVERT_TIME not in offered:
            raise SinkError(f"the OpenXR runtime does not offer {CONVERT_TIME}, needed to locate the head")
        # An overlay without a graphics binding still needs headless where the runtime has it.
        exts = needed + ([HEADLESS] if mode == "overlay" and HEADLESS in offered else []) + [CONVERT_TIME]
        try:
            self.instance = xr.create_instance(xr.InstanceCreateInfo(
                application_info=xr.ApplicationInfo(application_name=self.app_name, engine_name="vrfer",
                                                    api_version=xr.Version(1, 0, 0)),
                enabled_extension_names=exts))
        except xr.exception.XrException as e:
            raise SinkError(f"cannot start an OpenXR instance: {type(e).__name__}: {e}") from None
        try:
            props = xr.get_instance_properties(self.instance)
            self.runtime = _name(props.runtime_name)
            system = xr.get_system(self.instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
            nxt = xr.SessionCreateInfoOverlayEXTX(session_layers_placement=1) if mode == "overlay" else None
            self.session = xr.create_session(self.instance, xr.SessionCreateInfo(system_id=system, next=nxt))
            self._local = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
                reference_space_type=xr.ReferenceSpaceType.LOCAL))
            self._view = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
                reference_space_type=xr.ReferenceSpaceType.VIEW))
            self._to_xrtime = ctypes.cast(
                xr.get_instance_proc_addr(self.instance, "xrConvertTimespecTimeToTimeKHR"),
                xr.PFN_xrConvertTimespecTimeToTimeKHR)
        except xr.exception.XrException as e:
            self.close()
            raise SinkError(f"cannot start a {mode} OpenXR session on {self.runtime or 'the runtime'}: "
                            f"{type(e).__name__}: {e}") from None
        self.mode = mode
        self.presence = PresenceTracker(
            frozenset({"FOCUSED"}) if mode == "headless" else frozenset({"VISIBLE", "FOCUSED"}), self._still_s)
        return self

    def now(self) -> int:
        """The runtime's XrTime for this instant."""
        xr = self._xr
        ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        ts = xr.timespec(tv_sec=ns // 1_000_000_000, tv_nsec=ns % 1_000_000_000)
        out = xr.Time()
        res = self._to_xrtime(self.instance, ctypes.byref(ts), ctypes.byref(out))
        if res != 0:
            raise SinkError(f"xrConvertTimespecTimeToTimeKHR failed ({res})")
        return out.value

    def poll(self, now: float | None = None) -> SessionSnapshot:
        """Handle pending events, then locate the head. Call from the thread that opened it."""
        xr = self._xr
        ended = False
        while True:
            try:
                ev = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                break
            if xr.StructureType(ev.type) == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                sc = ctypes.cast(ctypes.byref(ev), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                state = xr.SessionState(sc.state)
                self.state = state.name
                self.states_seen.append(state.name)
                if state == xr.SessionState.READY:
                    xr.begin_session(self.session, xr.SessionBeginInfo(
                        primary_view_configuration_type=xr.ViewConfigurationType.PRIMARY_STEREO))
                    self._running = True
                elif state == xr.SessionState.STOPPING:
                    xr.end_session(self.session)
                    self._running = False
                elif state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
                    ended = True
            elif xr.StructureType(ev.type) == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                ended = True
        pose = None
        if self._running:
            loc = xr.locate_space(self._view, self._local, self.now())
            flags = int(loc.location_flags)
            tracked = bool(flags & int(xr.SpaceLocationFlags.ORIENTATION_VALID_BIT)) and \
                bool(flags & int(xr.SpaceLocationFlags.ORIENTATION_TRACKED_BIT))
            p, q = loc.pose.position, loc.pose.orientation
            pose = HeadPose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), tracked)
        t = time.monotonic() if now is None else now
        present = self.presence.update(t, self.state, pose)
        return SessionSnapshot(self.state, pose, present, self.presence.reason, ended)

    def close(self, timeout: float = 1.0) -> None:
        """End the session politely (request exit, wait for STOPPING, end) and free everything."""
        xr = self._xr
        if xr is None:
            return
        if self.session is not None and self._running:
            try:
                xr.request_exit_session(self.session)
                deadline = time.monotonic() + timeout
                while self._running and time.monotonic() < deadline:
                    self.poll()
                    time.sleep(0.005)
            except xr.exception.XrException:
                pass  # the runtime went away: destroying below is all that is left
        for space in (self._view, self._local):
            if space is not None:
                xr.destroy_space(space)
        self._view = self._local = None
        if self.session is not None:
            xr.destroy_session(self.session)
            self.session = None
        if self.instance is not None:
            xr.destroy_instance(self.instance)
            self.instance = None
        self._running = False

    def __enter__(self) -> CompanionSession:
        return self.open() if self.instance is None else self

    def __exit__(self, *exc) -> None:
        self.close()
