"""OSC sinks: VRChat (Unified Expressions v2 parameters) and VRCFaceTracking (Babble protocol).

Do not run both at once: VRCFaceTracking already forwards the Babble shapes to VRChat as v2
parameters, so a second writer of the same parameters makes the avatar flicker.

Threading: ``send(state)`` runs on the pipeline thread and only stores the state (a lock and
two assignments). A sender thread per sink wakes ``rate_hz`` times a second, blends the table,
and sends only the values that changed, plus everything about once a second (``refresh_s``)
so a late-starting receiver catches up. The socket is non-blocking; a full buffer drops a
round rather than waiting. When no face is seen, or no state arrives for ``stale_s``, the
values decay to the table's ``away`` pose instead of freezing.
"""
from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from vrfer.core.avatar.status import SinkStatus, decay_toward
from vrfer.core.avatar.tables import BlendTable, load_table
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ConfigError
from vrfer.core.types import ExpressionState

log = logging.getLogger("vrfer.avatar")

VRCHAT_PORT = 9000
VRCHAT_LISTEN_PORT = 9001  # VRChat's output; VRCFaceTracking owns it when it runs
VRCFT_BABBLE_PORT = 8888
# vrfer's own avatar parameters (documented in docs/avatar.md):
PARAM_INDEX = "/avatar/parameters/vrfer/ExpressionIndex"  # int: FERPLUS_CLASSES index, 0 when away
PARAM_CONFIDENCE = "/avatar/parameters/vrfer/ExpressionConfidence"  # float 0..1, 0 when away
PARAM_PRESENT = "/avatar/parameters/vrfer/FacePresent"  # bool
ERROR_HOLD_S = 5.0  # status keeps showing an error this long after it last happened

OscValue = float | int | bool


@dataclass(frozen=True)
class SinkTiming:
    rate_hz: float = 60.0  # at most this many rounds per second
    refresh_s: float = 1.0  # send every value at least this often
    away_tau_s: float = 0.35  # time constant of the decay to the away pose
    stale_s: float = 1.0  # no state for this long counts as "no face"
    min_delta: float = 1e-3  # a float counts as changed when it moves at least this much

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ConfigError(f"OSC send rate must be above 0 Hz, got {self.rate_hz}")
        if not self.refresh_s > 0:
            raise ConfigError(f"OSC refresh interval must be above 0 s, got {self.refresh_s}")


def parse_target(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` -> (host, port); a bad value is a ``ConfigError``."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = port_text, ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ConfigError(f"OSC target {text!r}: port must be a number, as in 127.0.0.1:{default_port}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"OSC target {text!r}: port {port} is outside 1..65535")
    return host, port


class OscSink:
    """Blends ``table`` by the latest state and sends it as OSC floats; see the module docstring."""

    name = "osc"
    hint = ""  # appended to "nothing is listening" warnings

    def __init__(self, host: str, port: int, table: BlendTable, *, timing: SinkTiming = SinkTiming(),
                 presence: Callable[[], bool] | None = None, autostart: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self._presence = presence  # e.g. OpenXRHook.is_present: headset off -> away
        self.timing = timing
        self.target = f"{host}:{port}"
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: ExpressionState | None = None
        self._latest_at = 0.0
        self._resend = threading.Event()
        self._stop = threading.Event()
        self._current = table.away.copy()
        self._present = False
        self._last_tick: float | None = None
        self._last_full: float | None = None
        self._sent: dict[str, OscValue] = {}
        self._count, self._count_since, self._rate = 0, clock(), 0.0
        self._error: str | None = None
        self._error_at = -1e9
        self._warned = False
        self._closed = False
        self._client: SimpleUDPClient | None = None
        try:
            self._client = SimpleUDPClient(host, port)
            # Connecting lets the kernel report "port unreachable" as ECONNREFUSED on a later send,
            # which is how a closed port becomes a readable warning instead of silence.
            self._client._sock.connect((host, port))
        except OSError as e:  # includes socket.gaierror for an unknown host name
            self._fail(f"cannot reach {self.target}: {_reason(e)}")
        self._thread: threading.Thread | None = None
        if autostart:
            self._thread = threading.Thread(target=self._run, name=f"vrfer-{self.name}", daemon=True)
            self._thread.start()

    # -- called from the pipeline thread -------------------------------------------------
    def send(self, state: ExpressionState) -> None:
        """Hand over the newest state; never blocks on the network."""
        with self._lock:
            self._latest, self._latest_at = state, self._clock()

    def request_full_resend(self) -> None:
        """Send every value on the next round (e.g. after VRChat loaded another avatar)."""
        self._resend.set()

    def status(self) -> SinkStatus:
        now = self._clock()
        err = self._error if now - self._error_at < ERROR_HOLD_S else None
        rate = self._rate if now - self._count_since < 2.0 else 0.0
        return SinkStatus(self.name, self.target, not self._closed and self._client is not None,
                          round(rate, 1), err, not self._present)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._closed = True
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the sender ----------------------------------------------------------------------
    def _run(self) -> None:
        period = 1.0 / self.timing.rate_hz
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.tick(self._clock())
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -period:  # fell behind (suspended, overloaded): don't burst to catch up
                next_at, delay = time.monotonic(), 0.0
            self._stop.wait(max(0.0, delay))

    def tick(self, now: float) -> int:
        """One send round at time ``now``; returns the number of messages sent. The sender thread
        calls this; tests call it directly with their own clock."""
        with self._lock:
            state, at = self._latest, self._latest_at
        t = self.timing
        present = state is not None and state.face and now - at <= t.stale_s
        if present and self._presence is not None:
            present = self._presence()
        dt = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if present:
            self._current = self.table.blend(state.probs, state.shapes)
        else:
            self._current = decay_toward(self._current, self.table.away, dt, t.away_tau_s)
        self._present = present
        values = self.messages(self._current, state if present else None)

        full = (self._last_full is None or now - self._last_full >= t.refresh_s or self._resend.is_set())
        if full:
            self._resend.clear()
            self._last_full = now
        sent = 0
        if self._client is not None:
            for address, value in values.items():
                if not full and not _changed(self._sent.get(address), value, t.min_delta):
                    continue
                if not self._send_one(address, value, now):
                    break  # one failure per round is enough; the next refresh retries all
                self._sent[address] = value
                sent += 1
        self._count += sent
        if now - self._count_since >= 1.0:
            self._rate = self._count / (now - self._count_since)
            self._count, self._count_since = 0, now
        return sent

    def messages(self, weights: np.ndarray, state: ExpressionState | None) -> dict[str, OscValue]:
        """Address -> value for one round. ``state`` is None while away."""
        raise NotImplementedError

    def _send_one(self, address: str, value: OscValue, now: float) -> bool:
        try:
            self._client.send_message(address, value)
            return True
        except BlockingIOError:  # send buffer full: drop the round rather than wait
            self._fail(f"send buffer to {self.target} is full; dropping values", now)
        except ConnectionRefusedError:
            self._fail(f"nothing is listening on {self.target}{self.hint}", now)
        except OSError as e:
            self._fail(f"cannot send to {self.target}: {_reason(e)}", now)
        return False

    def _fail(self, message: str, now: float | None = None) -> None:
        self._error, self._error_at = message, self._clock() if now is None else now
        if not self._warned:  # one readable warning per sink; the status carries the rest
            self._warned = True
            log.warning("%s sink: %s", self.name, message)


class VRChatSink(OscSink):
    """Unified Expressions v2 parameters straight to VRChat (UDP 9000 by default).

    ``ft_prefix`` sends ``/avatar/parameters/FT/v2/<Name>`` instead of ``.../v2/<Name>``.
    ``discrete`` adds vrfer's own ExpressionIndex / ExpressionConfidence / FacePresent.
    ``listen_port`` (off by default; VRChat sends on 9001) re-sends everything when VRChat
    reports ``/avatar/change``. Never listen on 9001 while VRCFaceTracking runs: it owns it.
    """

    name = "vrchat"
    hint = " (is VRChat running with OSC enabled?)"

    def __init__(self, host: str = "127.0.0.1", port: int = VRCHAT_PORT, table: BlendTable | None = None, *,
                 ft_prefix: bool = False, discrete: bool = True, listen_port: int | None = None,
                 listen_host: str = "127.0.0.1", timing: SinkTiming = SinkTiming(),
                 presence: Callable[[], bool] | None = None, autostart: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        table = table if table is not None else load_table("unified_v2")
        prefix = "/avatar/parameters/FT/v2/" if ft_prefix else "/avatar/parameters/v2/"
        self._addresses = [prefix + n for n in table.names]
        self._discrete = discrete
        self._server: BlockingOSCUDPServer | None = None
        self.listen_address: tuple[str, int] | None = None
        self.avatar_changes = 0
        super().__init__(host, port, table, timing=timing, presence=presence, autostart=autostart, clock=clock)
        if listen_port is not None:
            self._listen(listen_host, listen_port)

    def messages(self, weights: np.ndarray, state: ExpressionState | None) -> dict[str, OscValue]:
        out: dict[str, OscValue] = {a: float(w) for a, w in zip(self._addresses, weights)}
        if self._discrete:
            present = state is not None and state.label in FERPLUS_CLASSES
            out[PARAM_INDEX] = FERPLUS_CLASSES.index(state.label) if present else 0
            out[PARAM_CONFIDENCE] = float(min(1.0, max(0.0, state.confidence))) if present else 0.0
            out[PARAM_PRESENT] = bool(present)
        return out

    def _listen(self, host: str, port: int) -> None:
        dispatcher = Dispatcher()
        dispatcher.map("/avatar/change", self._on_avatar_change)
        try:
            self._server = BlockingOSCUDPServer((host, port), dispatcher)
        except OSError as e:
            why = "it is in use (VRCFaceTracking owns 9001 while it runs)" if e.errno == errno.EADDRINUSE \
                else _reason(e)
            self._fail(f"cannot listen for /avatar/change on {host}:{port}: {why}")
            return
        self.listen_address = self._server.server_address[:2]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="vrfer-vrchat-listen", daemon=True).start()

    def _on_avatar_change(self, address: str, *args) -> None:
        self.avatar_changes += 1
        self.request_full_resend()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        super().close()


class VRCFTSink(OscSink):
    """The 45 Babble-protocol floats to VRCFaceTracking's Babble module (UDP 8888 by default)."""

    name = "vrcft"
    hint = " (is VRCFaceTracking running with the Babble module?)"

    def __init__(self, host: str = "127.0.0.1", port: int = VRCFT_BABBLE_PORT, table: BlendTable | None = None,
                 *, timing: SinkTiming = SinkTiming(), presence: Callable[[], bool] | None = None,
                 autostart: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        table = table if table is not None else load_table("babble")
        self._addresses = ["/" + n for n in table.names]
        super().__init__(host, port, table, timing=timing, presence=presence, autostart=autostart, clock=clock)

    def messages(self, weights: np.ndarray, state: ExpressionState | None) -> dict[str, OscValue]:
        return {a: float(w) for a, w in zip(self._addresses, weights)}


def _changed(old: OscValue | None, new: OscValue, min_delta: float) -> bool:
    if old is None or type(old) is not type(new):
        return True
    if isinstance(new, float):
        return abs(new - old) >= min_delta
    return new != old


def _reason(e: OSError) -> str:
    if isinstance(e, socket.gaierror):
        return "unknown host name"
    return e.strerror or str(e)
