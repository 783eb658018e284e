"""Metric detection stage: batches of samples in, anomaly open/resolve events out.

Pure: no Kafka, no clock. Models live in memory (one per series); state that
changed is reported by :meth:`MetricDetector.take_dirty` so the stream layer
can checkpoint it to the table once per batch/interval, not per sample.

Examples
--------
>>> from sre_agent.config import AnomalySettings
>>> from sre_agent.schemas import MetricBatch
>>> det = MetricDetector(AnomalySettings(warmup_samples=20))
>>> pts = [(1.7e9 + 15 * i, 10.0 + (i % 3) * 0.1) for i in range(200)]
>>> det.update(MetricBatch(series=[{"name": "latency", "labels": {"service": "api"},
...                                 "points": pts}]))
[]
>>> out = det.update(MetricBatch(series=[{"name": "latency", "labels": {"service": "api"},
...                                       "points": [(1.7e9 + 15 * 201, 60.0)]}]))
>>> [(a.status, a.service, a.direction) for a in out]
[('open', 'api', 'up')]
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config import AnomalySettings
from ..models import SeasonalBaseline, Score
from ..schemas import Anomaly, MetricBatch, series_id

__all__ = ["MetricDetector", "SeriesState"]

log = logging.getLogger(__name__)

#: consecutive normal samples needed to close an open anomaly (hysteresis)
RECOVERY_SAMPLES = 3


@dataclass(slots=True)
class SeriesState:
    """In-memory state of one series: its model plus open-anomaly bookkeeping."""

    model: SeasonalBaseline
    open_id: str | None = None
    opened_t: float = 0.0
    normal_run: int = 0
    peak_score: float = 0.0
    #: caller's tag (the stream layer stores the Kafka partition here)
    tag: int = -1

    def to_bytes(self) -> bytes:
        head = (self.open_id or "").encode()
        return bytes([len(head)]) + head + self.model.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, warmup: int) -> SeriesState:
        k = data[0]
        open_id = data[1 : 1 + k].decode() or None
        return cls(model=SeasonalBaseline.from_bytes(data[1 + k :], warmup=warmup), open_id=open_id)


def _severity(score: float) -> str:
    return "critical" if score >= 0.95 else "warning"


class MetricDetector:
    """Learns every sample, scores it first, and emits anomaly transitions.

    Parameters
    ----------
    settings
        ``anomaly_detection`` section (threshold, per-metric overrides, warm-up).
    load
        Optional loader ``series_id -> bytes | None`` for persisted state (the
        Faust table); called once per series not yet in memory.
    """

    def __init__(
        self,
        settings: AnomalySettings,
        load: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self.settings = settings
        self._load = load
        self.series: dict[str, SeriesState] = {}
        self._dirty: set[str] = set()

    def threshold(self, metric: str) -> float:
        return self.settings.overrides.get(metric, self.settings.threshold)

    def _state(self, sid: str) -> SeriesState:
        st = self.series.get(sid)
        if st is None:
            raw = self._load(sid) if self._load else None
            if raw:
                try:
                    st = SeriesState.from_bytes(raw, self.settings.warmup_samples)
                except Exception:  # corrupt/old state: relearn rather than crash
                    log.warning("discarding unreadable state of %s", sid)
            if st is None:
                st = SeriesState(model=SeasonalBaseline(warmup=self.settings.warmup_samples))
            self.series[sid] = st
        return st

    def update(self, batch: MetricBatch, tag: int = -1) -> list[Anomaly]:
        """Score then learn every point of the batch; return anomaly transitions.

        ``tag`` is remembered per series (the stream layer passes the partition)
        and selects series in :meth:`take_dirty` and :meth:`forget`.
        """
        out: list[Anomaly] = []
        for s in batch.series:
            name, labels = s["name"], s["labels"]
            sid = series_id(name, labels)
            st = self._state(sid)
            st.tag = tag
            thr = self.threshold(name)
            for t, v in s["points"]:
                if t < st.model.last_t:  # late/out-of-order sample: learn nothing
                    continue
                sc = st.model.score_one(t, v)
                ev = self._transition(st, sid, name, labels, t, v, sc, thr)
                if ev is not None:
                    out.append(ev)
                st.model.learn_one(t, v)
            self._dirty.add(sid)
        return out

    def _transition(
        self, st: SeriesState, sid: str, name: str, labels: dict[str, str],
        t: float, v: float, sc: Score, thr: float,
    ) -> Anomaly | None:
        anomalous = sc.warm and sc.score >= thr
        if anomalous:
            st.normal_run = 0
            st.peak_score = max(st.peak_score, sc.score)
            if st.open_id is None:
                st.open_id = hashlib.blake2b(f"{sid}@{t}".encode(), digest_size=12).hexdigest()
                st.opened_t = t
                return self._event(st, sid, name, labels, t, v, sc, "open")
            return None
        if st.open_id is not None:
            st.normal_run += 1
            if st.normal_run >= RECOVERY_SAMPLES:
                ev = self._event(st, sid, name, labels, t, v, sc, "resolved")
                st.open_id, st.normal_run, st.peak_score = None, 0, 0.0
                return ev
        return None

    @staticmethod
    def _event(
        st: SeriesState, sid: str, name: str, labels: dict[str, str],
        t: float, v: float, sc: Score, status: str,
    ) -> Anomaly:
        assert st.open_id is not None
        return Anomaly(
            anomaly_id=st.open_id,
            status=status,  # type: ignore[arg-type]
            series=sid,
            metric=name,
            service=labels.get("service") or labels.get("app") or labels.get("job") or "unknown",
            labels=labels,
            observed=v,
            expected=sc.expected,
            lower=sc.lower,
            upper=sc.upper,
            deviation=sc.deviation,
            score=sc.score,
            severity=_severity(sc.score),  # type: ignore[arg-type]
            direction="up" if sc.deviation >= 0 else "down",
            contributions=sc.contributions,
            time=datetime.fromtimestamp(t, UTC),
            started_at=datetime.fromtimestamp(st.opened_t or t, UTC),
        )

    def take_dirty(self, tag: int | None = None) -> dict[str, bytes]:
        """Pop the serialized state of series changed since the last call.

        With ``tag``, only series last updated with that tag are taken (the
        partition being processed); the others stay dirty.
        """
        series = self.series
        taken = [sid for sid in self._dirty if tag is None or series[sid].tag == tag]
        self._dirty.difference_update(taken)
        return {sid: series[sid].to_bytes() for sid in taken}

    def forget(self, tags: set[int]) -> int:
        """Drop in-memory series with these tags (partitions revoked); return how many."""
        gone = [sid for sid, st in self.series.items() if st.tag in tags]
        for sid in gone:
            del self.series[sid]
            self._dirty.discard(sid)
        return len(gone)
