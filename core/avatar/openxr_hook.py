"""OpenXR hook: a companion session that knows whether the user is in the headset, and a
face-tracking provider that serves vrfer's expressions as XR_FB_face_tracking2 weights.

Third-party imports: numpy, and pyopenxr (``xr``) only when something is used, so this module
imports anywhere and runs inside the Monado test chroot. Without pyopenxr, using it raises a
one-line ``SinkError``.

Pieces:
- ``CompanionSession`` and ``PresenceTracker`` (``core.avatar.openxr_session``): whether the
  user is in the headset.
- ``FaceTrackingLayer``: an in-process OpenXR API layer (pyopenxr's ``DynamicApiLayerBase``)
  that adds XR_FB_face_tracking2 on top of any runtime and answers
  ``xrGetFaceExpressionWeights2FB`` from a ``FaceWeights`` store. The OpenXR loader allows one
  XrInstance per process, so a process that serves an OpenXR consumer this way runs the hook
  with ``companion=False``. Other processes read the same weights from the shared-memory
  channel in ``core.avatar.face_ipc``.
- ``OpenXRHook``: the sink. Its thread owns every OpenXR call, blends the FB table by the
  pipeline's probabilities, and decays to the ``away`` pose when the face is lost or the
  user is not present.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np

from vrfer.core.avatar.face_ipc import FaceShmWriter
from vrfer.core.avatar.openxr_session import CompanionSession, SessionSnapshot, _xr
from vrfer.core.avatar.status import SinkStatus, decay_toward
from vrfer.core.avatar.tables import BlendTable, load_table
from vrfer.core.errors import SinkError
from vrfer.core.types import ExpressionState

log = logging.getLogger("vrfer.avatar")

FB_EXTENSION = "XR_FB_face_tracking2"
N_WEIGHTS = 70
N_CONFIDENCES = 2


# -- the weights store the layer reads ------------------------------------------------------

class FaceWeights:
    """The latest XR_FB_face_tracking2 weights, safe to read from any thread."""

    def __init__(self, away: np.ndarray | None = None) -> None:
        self._lock = threading.Lock()
        self._weights = np.zeros(N_WEIGHTS, np.float32) if away is None else np.array(away, np.float32)
        self._valid = False
        self._time_ns = 0

    def set(self, weights: np.ndarray, valid: bool, time_ns: int | None = None) -> None:
        w = np.array(weights, np.float32)
        with self._lock:
            self._weights, self._valid = w, valid
            self._time_ns = time.monotonic_ns() if time_ns is None else time_ns

    def get(self) -> tuple[np.ndarray, bool, int]:
        with self._lock:
            return self._weights, self._valid, self._time_ns


# -- the in-process API layer ---------------------------------------------------------------

_layer_class = None
_layer_count = 0


def FaceTrackingLayer(weights: FaceWeights):  # noqa: N802 - a class built on first use
    """An API layer adding XR_FB_face_tracking2, serving ``weights``. Use as a context manager
    around the consumer's ``xrCreateInstance``..``xrDestroyInstance``: it enables itself through
    ``XR_ENABLE_API_LAYERS`` (as an implicit layer would be) and restores the variable after."""
    global _layer_class, _layer_count
    if _layer_class is None:
        _layer_class = _build_layer_class(_xr())
    _layer_count += 1
    return _layer_class(weights, f"XR_APILAYER_VRFER_face_tracking_{os.getpid()}_{_layer_count}")


def _build_layer_class(xr):
    from ctypes import POINTER, byref, c_char_p, c_uint64, cast, memmove, pointer, sizeof

    ext = FB_EXTENSION.encode()
    ok = int(xr.Result.SUCCESS.value)

    class _FaceTrackingLayer(xr.api_layer.DynamicApiLayerBase):
        def __init__(self, weights: FaceWeights, name: str) -> None:
            folder = os.path.join(tempfile.mkdtemp(prefix="vrfer-xr-layer-"), "manifest")
            super().__init__(name=name, description="vrfer: XR_FB_face_tracking2 from expressions",
                             json_path=folder)
            # Declare the extension so the loader lets applications enable it.
            manifest = os.path.join(self.json_path, f"{self.name}.json")
            with open(manifest) as f:
                data = json.load(f)
            data["api_layer"]["instance_extensions"] = [{"name": FB_EXTENSION, "extension_version": "1"}]
            with open(manifest, "w") as f:
                json.dump(data, f, indent=2)
            self.weights = weights
            self.calls = {"create": 0, "get": 0, "destroy": 0}
            self.app_enabled = False
            self._next_gipa = None
            self._next_get_props = None
            self._trackers: set[int] = set()
            self._keep: list = []
            self._saved_env: str | None = None
            # ctypes callbacks must outlive every call the loader makes through them
            self._p_gipa = xr.PFN_xrGetInstanceProcAddr(self._gipa)
            self._p_create = xr.PFN_xrCreateApiLayerInstance(self._create_instance)
            self._ours = {
                b"xrGetSystemProperties": xr.PFN_xrGetSystemProperties(self._get_system_properties),
                b"xrCreateFaceTracker2FB": xr.PFN_xrCreateFaceTracker2FB(self._create_tracker),
                b"xrDestroyFaceTracker2FB": xr.PFN_xrDestroyFaceTracker2FB(self._destroy_tracker),
                b"xrGetFaceExpressionWeights2FB": xr.PFN_xrGetFaceExpressionWeights2FB(self._get_weights),
            }

        def __enter__(self):
            self._saved_env = os.environ.get("XR_ENABLE_API_LAYERS")
            os.environ["XR_ENABLE_API_LAYERS"] = os.pathsep.join(filter(None, [self._saved_env, self.name]))
            return self

        def __exit__(self, *exc) -> None:
            if self._saved_env is None:
                os.environ.pop("XR_ENABLE_API_LAYERS", None)
            else:
                os.environ["XR_ENABLE_API_LAYERS"] = self._saved_env

        # loader plumbing
        def negotiate_loader_api_layer_interface(self, loader_info, layer_name, request):
            request.layer_interface_version = xr.CURRENT_LOADER_API_LAYER_VERSION
            request.layer_api_version = xr.XR_CURRENT_API_VERSION
            request.get_instance_proc_addr = self._p_gipa
            request.create_api_layer_instance = self._p_create
            return xr.Result.SUCCESS

        def _create_instance(self, info, layer_info, instance):
            ci = info.contents
            names = [ci._enabled_extension_names[i] for i in range(ci.enabled_extension_count)]
            self.app_enabled = ext in names
            keep = [n for n in names if n != ext]  # the runtime must not see our extension
            arr = (c_char_p * max(1, len(keep)))(*keep)
            new_ci = xr.InstanceCreateInfo.from_buffer_copy(ci)
            new_ci.enabled_extension_count = len(keep)
            new_ci._enabled_extension_names = cast(arr, POINTER(c_char_p))
            nxt = layer_info.contents.next_info.contents
            new_li = type(layer_info.contents).from_buffer_copy(layer_info.contents)
            new_li.next_info = nxt.next  # the next layer sees the chain from its own position
            self._keep[:] = [arr, new_ci, new_li]
            self._next_gipa = nxt.next_get_instance_proc_addr
            res = nxt.next_create_api_layer_instance(pointer(new_ci), pointer(new_li), instance)
            if res < 0:
                return res
            fn = xr.PFN_xrVoidFunction()
            self._next_gipa(cast(instance, POINTER(xr.Instance)).contents, b"xrGetSystemProperties", pointer(fn))
            self._next_get_props = cast(fn, xr.PFN_xrGetSystemProperties)
            return res

        def _gipa(self, instance, name, function):
            if name in self._ours and (name == b"xrGetSystemProperties" or self.app_enabled):
                memmove(function, byref(self._ours[name]), sizeof(xr.PFN_xrVoidFunction))
                return ok
            return self._next_gipa(instance, name, function)

        # the extension
        def _get_system_properties(self, instance, system_id, props):
            res = self._next_get_props(instance, system_id, props)
            p = props.contents._next
            while p:
                base = cast(p, POINTER(xr.BaseOutStructure))
                if int(base.contents._type) == int(xr.StructureType.SYSTEM_FACE_TRACKING_PROPERTIES2_FB):
                    ft = cast(p, POINTER(xr.SystemFaceTrackingProperties2FB)).contents
                    ft.supports_visual_face_tracking = 1
                    ft.supports_audio_face_tracking = 0
                p = base.contents._next
            return res

        def _create_tracker(self, session, create_info, out_tracker):
            self.calls["create"] += 1
            handle = 0x7F3E0000 + self.calls["create"]
            self._trackers.add(handle)
            memmove(out_tracker, byref(c_uint64(handle)), 8)
            return ok

        def _destroy_tracker(self, tracker):
            handle = cast(tracker, ctypes.c_void_p).value
            if handle not in self._trackers:
                return int(xr.Result.ERROR_HANDLE_INVALID.value)
            self.calls["destroy"] += 1
            self._trackers.discard(handle)
            return ok

        def _get_weights(self, tracker, info, out):
            if cast(tracker, ctypes.c_void_p).value not in self._trackers:
                return int(xr.Result.ERROR_HANDLE_INVALID.value)
            self.calls["get"] += 1
            w = out.contents
            if w.weight_count < N_WEIGHTS or w.confidence_count < N_CONFIDENCES:
                return int(xr.Result.ERROR_VALIDATION_FAILURE.value)
            weights, valid, _ = self.weights.get()
            ctypes.memmove(w._weights, weights.ctypes.data, 4 * N_WEIGHTS)
            for i in range(N_CONFIDENCES):
                w._confidences[i] = 1.0 if valid else 0.0
            w.is_valid = 1 if valid else 0
            w.is_eye_following_blendshapes_valid = 0
            w._data_source = int(xr.FaceTrackingDataSource2FB.VISUAL)
            w.time = info.contents.time
            return ok

    return _FaceTrackingLayer


class FaceTrackerReader:
    """Consumer side of XR_FB_face_tracking2 with caller-owned buffers (pyopenxr's own
    ``get_face_expression_weights2_fb`` passes none and always fails validation)."""

    def __init__(self, instance, session) -> None:
        xr = self._xr = _xr()
        self.tracker = xr.create_face_tracker2_fb(session, xr.FaceTrackerCreateInfo2FB(
            requested_data_sources=[xr.FaceTrackingDataSource2FB.VISUAL]))
        self._get = ctypes.cast(xr.get_instance_proc_addr(instance, "xrGetFaceExpressionWeights2FB"),
                                xr.PFN_xrGetFaceExpressionWeights2FB)
        self._wbuf = (ctypes.c_float * N_WEIGHTS)()
        self._cbuf = (ctypes.c_float * N_CONFIDENCES)()
        self._out = xr.FaceExpressionWeights2FB()
        self._out.weight_count = N_WEIGHTS
        self._out._weights = ctypes.cast(self._wbuf, ctypes.POINTER(ctypes.c_float))
        self._out.confidence_count = N_CONFIDENCES
        self._out._confidences = ctypes.cast(self._cbuf, ctypes.POINTER(ctypes.c_float))

    def read(self, xr_time: int) -> tuple[np.ndarray, bool]:
        xr = self._xr
        res = self._get(self.tracker, ctypes.byref(xr.FaceExpressionInfo2FB(time=xr_time)), ctypes.byref(self._out))
        if res != 0:
            raise SinkError(f"xrGetFaceExpressionWeights2FB failed ({xr.Result(res).name})")
        return np.frombuffer(self._wbuf, np.float32).copy(), bool(self._out.is_valid)

    def close(self) -> None:
        if self.tracker is not None:
            self._xr.destroy_face_tracker2_fb(self.tracker)
            self.tracker = None


_PERF_IS_MONOTONIC = time.get_clock_info("perf_counter").implementation == \
    time.get_clock_info("monotonic").implementation

# -- the sink ------------------------------------------------------------------------------

class OpenXRHook:
    """Sink: blends the FB table, gates it by headset presence, and publishes the weights to
    ``self.face`` (for ``FaceTrackingLayer``) and to the shared-memory channel."""

    name = "openxr"

    def __init__(self, table: BlendTable | None = None, *, companion: bool = True, mode: str = "auto",
                 shm_path: str | os.PathLike | None | bool = None, rate_hz: float = 60.0,
                 away_tau_s: float = 0.35, stale_s: float = 1.0, retry_s: float = 5.0, still_s: float = 20.0,
                 autostart: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table if table is not None else load_table("fb_face_tracking2")
        if self.table.names != tuple(self.table.shapes.names) or len(self.table.names) != N_WEIGHTS:
            raise SinkError("the OpenXR hook needs the fb_face_tracking2 table")
        self.face = FaceWeights(self.table.away)
        self._companion, self._mode, self._still_s = companion, mode, still_s
        self._rate_hz, self._tau, self._stale_s, self._retry_s = rate_hz, away_tau_s, stale_s, retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: ExpressionState | None = None
        self._latest_at = 0.0
        self._current = self.table.away.copy()
        self._last_tick: float | None = None
        self.session: CompanionSession | None = None
        self.snapshot: SessionSnapshot | None = None
        self._next_open = 0.0
        self._user_present = True  # unknown counts as present: no runtime must not mute the avatar
        self._valid = False
        self._error: str | None = None
        self._warned = False
        self._ticks, self._ticks_since, self._rate = 0, clock(), 0.0
        self._closed = False
        self._stop = threading.Event()
        self._shm: FaceShmWriter | None = None
        if shm_path is not False:
            try:
                self._shm = FaceShmWriter(shm_path if shm_path not in (None, True) else None)
            except SinkError as e:
                self._fail(str(e))
        self._thread: threading.Thread | None = None
        if autostart:
            self._thread = threading.Thread(target=self._run, name="vrfer-openxr", daemon=True)
            self._thread.start()

    @property
    def present(self) -> bool:
        """Whether the user is in the headset (True while that is unknown)."""
        return self._user_present

    def is_present(self) -> bool:
        """``present`` as a callable, for the OSC sinks' ``presence=`` gate."""
        return self._user_present

    @property
    def shm_path(self):
        return None if self._shm is None else self._shm.path

    def send(self, state: ExpressionState) -> None:
        with self._lock:
            self._latest, self._latest_at = state, self._clock()

    def status(self) -> SinkStatus:
        target = self.session.runtime if self.session is not None and self.session.runtime else "OpenXR"
        if self.session is not None and self.session.mode:
            target += f" ({self.session.mode}, {self.session.state})"
        return SinkStatus(self.name, target, not self._closed, round(self._rate, 1), self._error, not self._valid)

    def _run(self) -> None:
        period = 1.0 / self._rate_hz
        try:
            while not self._stop.is_set():
                self.tick(self._clock())
                self._stop.wait(period)
        finally:
            self._close_session()  # OpenXR objects die on the thread that made them

    def tick(self, now: float) -> np.ndarray:
        """One round: follow the session, then publish weights. Returns what was published."""
        if self._companion:
            self._follow_session(now)
        with self._lock:
            state, at = self._latest, self._latest_at
        face = state is not None and state.face and now - at <= self._stale_s
        valid = face and self._user_present
        dt = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if valid:
            self._current = self.table.blend(state.probs, state.shapes)
        else:
            self._current = decay_toward(self._current, self.table.away, dt, self._tau)
        self._valid = valid
        self.face.set(self._current, valid)
        if self._shm is not None:
            conf = float(state.confidence) if valid else 0.0
            # valid weights are the state's own: stamp them with its capture time, where
            # perf_counter is the block's clock (CLOCK_MONOTONIC on Linux); a decaying pose is of now
            t_ns = int(state.timestamp * 1e9) if valid and _PERF_IS_MONOTONIC else None
            self._shm.publish(self._current, valid, (conf, conf), time_ns=t_ns)
        self._ticks += 1
        if now - self._ticks_since >= 1.0:
            self._rate = self._ticks / (now - self._ticks_since)
            self._ticks, self._ticks_since = 0, now
        return self._current

    def _follow_session(self, now: float) -> None:
        if self.session is None:
            if now < self._next_open:
                return
            self._next_open = now + self._retry_s
            try:
                self.session = CompanionSession(mode=self._mode, still_s=self._still_s).open()
                self._error = None
                log.info("openxr: %s session on %s", self.session.mode, self.session.runtime)
            except SinkError as e:
                self.session = None
                self._user_present = True
                self._fail(str(e))
                return
        try:
            self.snapshot = snap = self.session.poll(now)
        except Exception as e:  # noqa: BLE001 - any runtime failure: drop the session, retry later
            self._fail(f"OpenXR session failed: {type(e).__name__}: {e}")
            self._close_session()
            return
        self._user_present = snap.present
        if snap.ended:
            self._close_session()

    def _close_session(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception as e:  # noqa: BLE001 - closing must never take the app down
                log.debug("openxr: close failed: %s", e)
            self.session = None
            self._next_open = self._clock() + self._retry_s
            self._user_present = True

    def _fail(self, message: str) -> None:
        self._error = message
        if not self._warned:
            self._warned = True
            log.warning("openxr hook: %s", message)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3.0)
        else:
            self._close_session()
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        self._closed = True

    def __enter__(self) -> OpenXRHook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
