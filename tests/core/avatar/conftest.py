"""Real fixtures for the avatar sinks: an OSC receiver on loopback and states to feed."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.types import ExpressionState


@dataclass
class OscRecorder:
    """Everything a real python-osc server on 127.0.0.1 received, in arrival order."""

    port: int
    messages: list[tuple[float, str, tuple]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, address: str, *args) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), address, args))

    def take(self, expected: int | None = None, timeout: float = 2.0, settle: float = 0.05) -> list[tuple[str, tuple]]:
        """Wait until ``expected`` messages arrived (or, if None, until none arrive for ``settle``
        seconds), then return and forget them as (address, args) pairs."""
        deadline = time.monotonic() + timeout
        last_len, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                n = len(self.messages)
            if expected is not None and n >= expected:
                time.sleep(settle)  # catch extras that would prove "too many"
                break
            if n != last_len:
                last_len, quiet_since = n, time.monotonic()
            elif expected is None and time.monotonic() - quiet_since >= settle:
                break
            time.sleep(0.005)
        with self.lock:
            out = [(a, args) for _, a, args in self.messages]
            self.messages.clear()
        return out


@pytest.fixture
def osc_listener():
    dispatcher = Dispatcher()
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    rec = OscRecorder(server.server_address[1])
    dispatcher.set_default_handler(rec.record)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def make_state(probs: dict[str, float] | None = None, *, face: bool = True, index: int = 0,
               shapes: dict[str, float] | None = None) -> ExpressionState:
    """A pipeline output: ``probs`` is completed with zeros; the label is the arg-max; ``shapes``
    are a shapes model's mouth values."""
    full = {c: 0.0 for c in FERPLUS_CLASSES}
    full.update(probs or {"neutral": 1.0})
    label = max(full, key=full.get) if face else None
    return ExpressionState(frame_index=index, timestamp=0.0, face=face, label=label,
                           confidence=full[label] if label else 0.0, probs=full if face else {},
                           shapes=shapes or {})


@pytest.fixture
def state_factory():
    return make_state
