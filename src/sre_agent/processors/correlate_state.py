"""Compact, table-friendly state of the correlator (one :class:`GroupState` per group).

Encoded with orjson into the ``correlation`` table's raw bytes values; bounded:
at most :data:`MAX_SIGNALS` fingerprints per incident, a capped list of
changes per service, resolved incidents kept only for the reopen window.

>>> st = GroupState(group="api")
>>> GroupState.from_bytes(st.to_bytes()).group
'api'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..schemas import SignalRef
from .correlate_signals import Signal

__all__ = ["MAX_SIGNALS", "GroupState", "IncidentState", "SignalState"]

#: distinct fingerprints remembered per incident (others are still counted)
MAX_SIGNALS = 200
#: labels kept per incident (for notification routing)
MAX_LABELS = 32
#: a prediction keeps its incident open for signals up to this far ahead (s)
PREDICTION_HORIZON = 6 * 3600.0


@dataclass(slots=True)
class SignalState:
    fingerprint: str
    kind: str
    service: str
    rule: str
    severity: str
    summary: str
    ref: str
    first: float
    last: float
    count: int = 1
    active: bool = True
    flips: list[float] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def flip(self, ts: float, window: float) -> None:
        """Record a firing/resolved transition; keep those inside the window."""
        self.flips = [t for t in self.flips if ts - t <= window][-31:] + [ts]

    def to_ref(self) -> SignalRef:
        attrs = {**self.attrs, "count": self.count, "active": self.active,
                 "last": datetime.fromtimestamp(self.last, UTC).isoformat()}
        return SignalRef(kind=self.kind, ref=self.ref, service=self.service,  # type: ignore[arg-type]
                         summary=self.summary, time=datetime.fromtimestamp(self.first, UTC),
                         severity=self.severity, metric=self.rule or None,  # type: ignore[arg-type]
                         attrs=attrs)


@dataclass(slots=True)
class IncidentState:
    id: str
    fingerprint: str
    opened_ts: float
    last_ts: float
    services: list[str]
    touched: float
    signals: dict[str, SignalState] = field(default_factory=dict)
    severity: str = "warning"
    changes: list[dict[str, Any]] = field(default_factory=list)
    root: str = ""
    revision: int = 1
    emitted: bool = False
    last_emit: float = 0.0
    dirty: bool = False
    count: int = 0
    resolved_at: float | None = None
    quiet_since: float | None = None
    reopen_count: int = 0
    #: labels of the signals (first value of a key wins), for routing
    labels: dict[str, str] = field(default_factory=dict)
    severity_reasons: list[str] = field(default_factory=list)
    impact: float | None = None
    resolved_by: str | None = None

    def add(self, sig: Signal) -> None:
        """Absorb a firing signal (new fingerprint or a recurrence of a known one)."""
        self.count += 1
        self.last_ts = max(self.last_ts, sig.ts)
        for k, v in sig.labels.items():
            if len(self.labels) >= MAX_LABELS:
                break
            self.labels.setdefault(k, v[:256])
        if sig.kind == "prediction":  # an early warning stays relevant until its breach time
            ahead = min(float(sig.attrs.get("seconds_to_breach", 0.0)), PREDICTION_HORIZON)
            self.last_ts = max(self.last_ts, sig.ts + ahead)
        s = self.signals.get(sig.fingerprint)
        if s is not None:
            s.count += 1
            s.last = max(s.last, sig.ts)
            s.active = True
            s.attrs.update(sig.attrs)
            return
        if len(self.signals) >= MAX_SIGNALS:
            return
        self.signals[sig.fingerprint] = SignalState(
            fingerprint=sig.fingerprint, kind=sig.kind, service=sig.service, rule=sig.rule,
            severity=sig.severity, summary=sig.summary[:300], ref=sig.ref or sig.fingerprint,
            first=sig.ts, last=sig.ts, attrs=dict(sig.attrs))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IncidentState:
        d = dict(d)
        d["signals"] = {k: SignalState(**v) for k, v in d.get("signals", {}).items()}
        return cls(**d)


@dataclass(slots=True)
class GroupState:
    group: str = ""
    incidents: list[IncidentState] = field(default_factory=list)
    #: fingerprint -> [first event ts, count, last processing time] below the threshold
    pending: dict[str, list[float]] = field(default_factory=dict)
    #: service -> recent deploys/config changes (dicts with ``ts`` and ``event_id``)
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: fingerprint -> firing weak signal (JSON of the Signal) waiting for corroboration
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: service -> event time its held signals first made the evidence complete; judged
    #: once the rest of that moment's signals are in (``CorrelationSettings.settle``)
    ready: dict[str, float] = field(default_factory=dict)

    def active_with(self, fingerprint: str) -> IncidentState | None:
        for inc in self.incidents:
            if inc.resolved_at is None and fingerprint in inc.signals:
                return inc
        return None

    def resolved_with(self, fingerprint: str) -> IncidentState | None:
        best = None
        for inc in self.incidents:
            if inc.resolved_at is not None and fingerprint in inc.signals:
                if best is None or inc.resolved_at > (best.resolved_at or 0):
                    best = inc
        return best

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupState:
        d = orjson.loads(data)
        return cls(group=d.get("group", ""),
                   incidents=[IncidentState.from_dict(i) for i in d.get("incidents", [])],
                   pending=d.get("pending", {}), changes=d.get("changes", {}),
                   held=d.get("held", {}), ready=d.get("ready", {}))
