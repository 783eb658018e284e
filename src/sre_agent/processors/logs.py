"""Log patterns: templates mined online, error-template rates baselined like metrics.

Pure: no Kafka, no clock (windows close on the records' own time, or on the
``now`` passed to :meth:`LogPatternDetector.tick`). Per service:

1. every line goes through the service's :class:`~sre_agent.models.templates.TemplateMiner`;
2. lines are counted per template in windows of ``window_seconds``; when a window
   closes, the count of every error template seen in the last hour (zeros too)
   and the service's total error count become samples of the series
   ``log_error_rate{service, template}`` in a :class:`~.detect.MetricDetector`
   with Poisson-aware spread — the same seasonal model as metrics;
3. anomalies: an error-template **surge** (rate anomaly going up) and a **new error
   template** (a template founded by an error line once the service is past its
   warm-up), which resolves after ``quiet_windows`` windows without it.

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.config import AnomalySettings, LogPatternSettings
>>> from sre_agent.schemas import LogRecord
>>> det = LogPatternDetector(LogPatternSettings(warmup_lines=5, warmup_seconds=0),
...                          AnomalySettings())
>>> def rec(i, msg, level="info"):
...     return LogRecord(service="pay", level=level, message=msg,
...                      time=datetime.fromtimestamp(1.7e9 + i, UTC))
>>> for i in range(10):
...     _ = det.add(rec(i, f"request {i} served in {i * 3} ms"))
>>> [(a.kind, a.status, a.template) for a in det.add(rec(11, "DB pool exhausted (size=20)", "error"))]
[('log', 'open', 'DB pool exhausted size <*>')]
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..config import AnomalySettings, LogPatternSettings
from ..models.templates import TemplateMiner
from ..schemas import Anomaly, LogRecord
from .detect import MetricDetector, anomaly_id

__all__ = ["RATE_METRIC", "LogPatternDetector"]

log = logging.getLogger(__name__)

RATE_METRIC = "log_error_rate"
TOTAL = "_all"  #: template label of a service's total error rate
#: error templates stay baselined (zeros included) this many windows after last seen
ACTIVE_WINDOWS = 60
#: at most this many empty windows are filled after a silence
MAX_FILL = 10
_ERROR_WORDS = re.compile(r"\b(error|exception|fatal|panic|traceback|fail(ed|ure)?)\b", re.I)


@dataclass
class _Service:
    miner: TemplateMiner
    start: float | None = None  #: open window start
    counts: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    active: dict[str, float] = field(default_factory=dict)  #: error template -> last window
    new_open: dict[str, list[float]] = field(default_factory=dict)  #: tid -> [opened_t, quiet]
    tag: int = -1

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": 1, "miner": self.miner.to_dict(), "start": self.start,
                             "counts": self.counts, "errors": self.errors,
                             "active": self.active, "new": self.new_open})

    @classmethod
    def from_bytes(cls, data: bytes) -> _Service:
        d = orjson.loads(data)
        return cls(TemplateMiner.from_dict(d["miner"]), d["start"], Counter(d["counts"]),
                   d["errors"], d["active"], d["new"])


class LogPatternDetector:
    """Template mining, per-template rate baselines and log anomalies.

    Parameters
    ----------
    settings
        ``log_patterns`` section.
    anomaly
        ``anomaly_detection`` section (threshold, warm-up in windows); an override
        for ``log_error_rate`` applies to surges.
    load_service, load_rate
        Optional loaders of persisted state (service -> bytes, series id -> bytes).
    """

    def __init__(self, settings: LogPatternSettings, anomaly: AnomalySettings,
                 load_service: Callable[[str], bytes | None] | None = None,
                 load_rate: Callable[[str], bytes | None] | None = None) -> None:
        self.settings = settings
        self.rates = MetricDetector(anomaly, load=load_rate, counts=True)
        self._load = load_service
        self.services: dict[str, _Service] = {}
        self._levels = {x.lower() for x in settings.error_levels}
        #: rate anomalies opened going down: not reported, nor their resolution (a
        #: resolution unknown after a restart is reported: harmless, unlike a lost one)
        self._suppressed: set[str] = set()
        self._dirty: set[str] = set()

    def is_error(self, rec: LogRecord) -> bool:
        level = rec.level.lower()
        if level in self._levels:
            return True
        if level in ("", "unknown", "none"):
            return bool(_ERROR_WORDS.search(rec.message))
        return False

    def _service(self, name: str) -> _Service:
        svc = self.services.get(name)
        if svc is None:
            raw = self._load(name) if self._load else None
            if raw:
                try:
                    svc = _Service.from_bytes(raw)
                except Exception:  # noqa: BLE001 - unreadable: start over
                    log.warning("discarding unreadable log-pattern state of %s", name)
            if svc is None:
                s = self.settings
                svc = _Service(TemplateMiner(s.similarity, s.depth, s.max_templates, seed=name))
            self.services[name] = svc
        return svc

    # ------------------------------------------------------------ the stage
    def add(self, rec: LogRecord, tag: int = -1) -> list[Anomaly]:
        """Mine one record; return anomalies (window closes and new error templates)."""
        name = rec.service
        svc = self._service(name)
        svc.tag = tag
        self._dirty.add(name)
        t = rec.time.timestamp()
        out = self._roll(name, svc, t)
        err = self.is_error(rec)
        m = svc.miner.add(rec.message, error=err, t=t)
        svc.counts[m.template_id] += 1
        if err:
            svc.errors += 1
            svc.active[m.template_id] = svc.start or t
        s = self.settings
        warm = svc.miner.lines > s.warmup_lines and t - (svc.miner.first_t or t) >= s.warmup_seconds
        if m.is_new and err and warm and m.template_id not in svc.new_open:
            svc.new_open[m.template_id] = [t, 0.0]
            out.append(self._new_template_event(name, m.template_id, m.template, t, "open"))
        return out

    def tick(self, now: float) -> list[Anomaly]:
        """Close windows of services that went quiet (``now``: the stream's clock)."""
        out: list[Anomaly] = []
        for name, svc in self.services.items():
            if svc.start is not None and now >= svc.start + 2 * self.settings.window_seconds:
                out.extend(self._roll(name, svc, now))
                self._dirty.add(name)
        return out

    def _roll(self, name: str, svc: _Service, t: float) -> list[Anomaly]:
        w = self.settings.window_seconds
        if svc.start is None:
            svc.start = t - t % w
            return []
        out: list[Anomaly] = []
        filled = 0
        while t >= svc.start + w and filled <= MAX_FILL:
            out.extend(self._close(name, svc, svc.start + w))
            svc.start += w
            filled += 1
        if t >= svc.start + w:  # a long silence: jump, without filling every window
            svc.start = t - t % w
        return out

    def _close(self, name: str, svc: _Service, end: float) -> list[Anomaly]:
        w = self.settings.window_seconds
        horizon = end - ACTIVE_WINDOWS * w
        svc.active = {k: v for k, v in svc.active.items() if v >= horizon}
        series: list[dict[str, Any]] = [
            {"name": RATE_METRIC, "labels": {"service": name, "template": tid},
             "points": [(end, float(svc.counts.get(tid, 0)))]} for tid in svc.active]
        series.append({"name": RATE_METRIC, "labels": {"service": name, "template": TOTAL},
                       "points": [(end, float(svc.errors))]})
        out = [self._rate_event(name, svc, a) for a in self.rates.update_series(series, svc.tag)]
        out = [a for a in out if a is not None]
        for tid, st in list(svc.new_open.items()):
            st[1] = 0.0 if svc.counts.get(tid) else st[1] + 1
            if st[1] >= self.settings.quiet_windows:
                tpl = svc.miner.templates.get(tid)
                out.append(self._new_template_event(name, tid, tpl.text if tpl else tid, end,
                                                    "resolved", opened_t=st[0]))
                del svc.new_open[tid]
        svc.counts.clear()
        svc.errors = 0
        return out

    def _rate_event(self, name: str, svc: _Service, a: Anomaly) -> Anomaly | None:
        if a.status == "open":
            if a.direction != "up":  # an error template going quiet is good news
                self._suppressed.add(a.anomaly_id)
                return None
        elif a.anomaly_id in self._suppressed:
            self._suppressed.discard(a.anomaly_id)
            return None
        tid = a.labels.get("template", TOTAL)
        tpl = svc.miner.templates.get(tid)
        return a.model_copy(update={
            "kind": "log", "series": f"{name}/{tid}", "service": name,
            "template": tpl.text if tpl else None,
            "contributions": {**a.contributions, "surge": a.score}})

    def _new_template_event(self, name: str, tid: str, text: str, t: float, status: str,
                            opened_t: float | None = None) -> Anomaly:
        opened = t if opened_t is None else opened_t
        return Anomaly(
            anomaly_id=anomaly_id(f"{name}/{tid}", opened), status=status,  # type: ignore[arg-type]
            kind="log", series=f"{name}/{tid}", metric="log_new_error_template", service=name,
            labels={"service": name, "template": tid}, observed=1.0, expected=0.0, lower=0.0,
            upper=0.0, deviation=0.0, score=0.9, severity="warning", direction="up",
            contributions={"new_template": 1.0}, template=text,
            time=datetime.fromtimestamp(t, UTC), started_at=datetime.fromtimestamp(opened, UTC))

    # ------------------------------------------------------------ state
    def take_dirty(self, tag: int | None = None) -> dict[str, bytes]:
        taken = [n for n in self._dirty if tag is None or self.services[n].tag == tag]
        self._dirty.difference_update(taken)
        return {n: self.services[n].to_bytes() for n in taken}

    def forget(self, tags: Iterable[int]) -> int:
        tags = set(tags)
        gone = [n for n, s in self.services.items() if s.tag in tags]
        for n in gone:
            del self.services[n]
            self._dirty.discard(n)
        self.rates.forget(tags)
        return len(gone)

    def describe(self, service: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Templates per service, most frequent first (for the API)."""
        out = []
        for name, svc in self.services.items():
            if service and name != service:
                continue
            tpls = sorted(svc.miner.templates.values(), key=lambda x: -x.count)[:limit]
            out.append({"service": name, "lines": svc.miner.lines,
                        "templates": [{"id": x.template_id, "template": x.text, "count": x.count,
                                       "errors": x.errors, "error": x.is_error} for x in tpls]})
        return out
