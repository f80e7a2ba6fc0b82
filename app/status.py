"""What the window writes in its labels: source names, rates, latencies, sink states. Qt-free."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from vrfer.core.avatar.status import SinkStatus
from vrfer.core.source_spec import classify_source
from vrfer.core.types import ExpressionState

STAGE_ORDER = ("locate", "preprocess", "model", "smooth", "total")
LATENCY_EMA = 0.1  # per displayed state: a readable, steady latency figure


def describe_source(spec: str) -> str:
    kind = classify_source(spec)
    if kind.kind == "demo":
        return "Demo (FER+ faces)"
    if kind.kind == "camera":
        return f"Camera {kind.camera}"
    if kind.kind == "stream":
        return f"Stream {kind.text}"
    return f"File {Path(spec).name}"


def is_camera(spec: str) -> bool:
    return classify_source(spec).kind == "camera"


class Latency:
    """Per-stage latency, smoothed per displayed state."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def add(self, timings: Mapping[str, float]) -> None:
        for k, v in timings.items():
            old = self.ms.get(k)
            self.ms[k] = v if old is None else old + LATENCY_EMA * (v - old)

    def text(self) -> str:
        return " · ".join(f"{k} {self.ms[k]:.1f}" for k in STAGE_ORDER if k in self.ms) or "—"


def stats_text(fps: float, processed: int, dropped: int, latency: Latency) -> str:
    return f"{fps:.1f} fps · {processed} frames · {dropped} dropped\nlatency ms: {latency.text()}"


def state_detail(state: ExpressionState) -> str:
    """The line under the label: the state's message, the demo's truth, how the face was found."""
    detail = []
    if state.message:
        detail.append(state.message)
    if state.truth:
        detail.append(f"demo truth: {state.truth}")
    if state.geometry is not None:
        g = state.geometry
        detail.append(f"face via {g.path}" + (f", yaw {g.yaw:+.0f}° pitch {g.pitch:+.0f}°" if g.path != "roi" else ""))
    return " · ".join(detail) or " "


def calibration_text(offsets: Mapping[str, float]) -> str:
    if not offsets:
        return "not calibrated"
    top = sorted(offsets.items(), key=lambda kv: -abs(kv[1]))[:2]
    return "calibrated: " + ", ".join(f"{k} {v:+.1f}" for k, v in top)


def sink_text(statuses: Iterable[SinkStatus], off: bool) -> tuple[str, str | None]:
    """(the status lines, the last problem for the banner or None)."""
    lines, problem = [], None
    for st in statuses:
        line = f"{st.name} → {st.target}: {'on' if st.enabled else 'off'}, {st.messages_per_s:.0f} msg/s"
        if st.away:
            line += " (away pose)"
        if st.last_error:
            line += f" — {st.last_error}"
            problem = f"avatar output {st.name}: {st.last_error}"
        lines.append(line)
    if not lines:
        return ("off" if off else "starting…"), None
    return "\n".join(lines), problem
