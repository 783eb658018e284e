"""Early warning: saturation series -> time-to-breach predictions.

Pure: no Kafka, no clock (time is the samples' time). Only series whose metric
name matches a ``prediction.rules`` glob are followed, each by a
:class:`~sre_agent.models.forecast.TrendForecaster`. When a bucket closes the
forecast is refreshed; a :class:`~sre_agent.schemas.Prediction` is emitted when
the limit is expected within ``horizon_hours`` with at least ``min_confidence``,
and repeated at most every ``repeat_minutes`` (sooner if the ETA halves).

Examples
--------
>>> from sre_agent.config import PredictionSettings
>>> from sre_agent.schemas import MetricBatch
>>> ew = EarlyWarning(PredictionSettings())
>>> pts = [(1.7e9 + 60 * i, 0.5 + 0.1 * i / 60) for i in range(4 * 60)]  # +10%/h
>>> out = ew.update(MetricBatch(series=[
...     {"name": "memory_limit_ratio", "labels": {"service": "api", "pod": "api-1"}, "points": pts},
...     {"name": "cpu_usage_cores", "labels": {"service": "api"}, "points": pts}]))
>>> [(p.metric, p.service, p.limit, round(p.seconds_to_breach / 3600, 1)) for p in out][:1]
[('memory_limit_ratio', 'api', 1.0, 1.1)]
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config import LimitRule, PredictionSettings
from ..models.forecast import TrendForecaster
from ..schemas import MetricBatch, Prediction, series_id
from ..schemas.telemetry import series_key

__all__ = ["EarlyWarning", "rule_for"]

log = logging.getLogger(__name__)
_VERSION = b"\x01"
_UNSET: Any = object()


def rule_for(metric: str, rules: Sequence[LimitRule]) -> LimitRule | None:
    """The first rule whose glob matches ``metric``.

    >>> from sre_agent.config import LimitRule
    >>> rule_for("disk_used_ratio", [LimitRule(match="*disk*", limit=0.9)]).limit
    0.9
    """
    for r in rules:
        if fnmatch.fnmatchcase(metric, r.match):
            return r
    return None


@dataclass(slots=True)
class _Tracked:
    sid: str
    name: str
    labels: dict[str, str]
    rule: LimitRule
    model: TrendForecaster
    tag: int = -1
    last_emit_t: float = -math.inf
    last_eta: float = math.inf

    def to_bytes(self) -> bytes:
        head = f"{self.last_emit_t!r}|{self.last_eta!r}".encode()
        return _VERSION + bytes([len(head)]) + head + self.model.to_bytes()


class EarlyWarning:
    """Follows saturation series and emits predictions.

    Parameters
    ----------
    settings
        The ``prediction`` section.
    load
        Optional loader ``series_id -> bytes | None`` of persisted state.
    """

    def __init__(self, settings: PredictionSettings,
                 load: Callable[[str], bytes | None] | None = None) -> None:
        self.settings = settings
        self._load = load
        self._rules: dict[str, LimitRule | None] = {}
        self.tracked: dict[str, _Tracked] = {}
        self._dirty: set[str] = set()
        self._runs: dict[str, str] = {}
        #: series key (a resolved series' ``id``) -> its tracked entry
        self._by_key: dict[str, _Tracked] = {}

    def _rule(self, name: str) -> LimitRule | None:
        if name not in self._rules:
            self._rules[name] = rule_for(name, self.settings.rules) if self.settings.enabled else None
        return self._rules[name]

    def _get(self, name: str, labels: dict[str, str], rule: LimitRule,
             shared: bool = False) -> _Tracked:
        """The tracked entry of a series (created, with its saved state if any);
        ``shared``: ``labels`` is the series directory's dict, kept as it is (the
        detector keeps the same one), not copied (issue 18, memory)."""
        sid = series_id(name, labels)
        tr = self.tracked.get(sid)
        if tr is None:
            s = self.settings
            model = None
            raw = self._load(sid) if self._load else None
            last_emit_t, last_eta = -math.inf, math.inf
            if raw and raw[:1] == _VERSION:
                try:
                    k = raw[1]
                    a, b = raw[2:2 + k].decode().split("|")
                    last_emit_t, last_eta = float(a), float(b)
                    model = TrendForecaster.from_bytes(raw[2 + k:])
                except Exception:  # noqa: BLE001 - unreadable state: start over
                    log.warning("discarding unreadable forecast state of %s", sid)
                    model = None
            if model is None:
                model = TrendForecaster(s.bucket_seconds, s.alpha, s.beta)
            tr = _Tracked(sid, name, labels if shared else dict(labels), rule, model,
                          last_emit_t=last_emit_t,
                          last_eta=last_eta)
            self.tracked[sid] = tr
        return tr

    def update(self, batch: MetricBatch, tag: int = -1) -> list[Prediction]:
        """Learn the batch's saturation series; return due predictions.

        A ``history:<run>`` batch is learned silently; the first one of a run
        restarts the series' forecaster (the history precedes live samples).
        """
        if batch.source.startswith("history:"):
            return self.update_series(batch.series, tag, history_run=batch.source[8:])
        return self.update_series(batch.series, tag)

    def update_series(self, series: Iterable[Any], tag: int = -1,
                      history_run: str | None = None) -> list[Prediction]:
        out: list[Prediction] = []
        emit = history_run is None
        rules, by_key = self._rules, self._by_key
        for s in series:
            name = s["name"]
            rule = rules.get(name, _UNSET)
            if rule is _UNSET:
                rule = self._rule(name)
            if rule is None:
                continue
            # a series resolved by the series directory carries its verified key: found
            # by it, without rebuilding its canonical id from the labels every sample
            key = s.get("id")
            tr = by_key.get(key) if key is not None else None
            if tr is None:
                tr = self._get(name, s["labels"], rule, shared=key is not None)
                if key is not None and series_key(tr.sid) == key:
                    by_key[key] = tr  # a key not the labels' own is never trusted
            tr.tag = tag
            if history_run is not None and self._runs.get(tr.sid) != history_run:
                self._runs[tr.sid] = history_run
                st = self.settings
                tr.model = TrendForecaster(st.bucket_seconds, st.alpha, st.beta)
            closed = False
            for t, v in s["points"]:
                closed |= tr.model.learn_one(t, v)
            self._dirty.add(tr.sid)
            if closed and emit:
                p = self._assess(tr)
                if p is not None:
                    out.append(p)
        return out

    def _limit(self, tr: _Tracked) -> float:
        r = tr.rule
        if r.limit_label and r.limit_label in tr.labels:
            try:
                return float(tr.labels[r.limit_label])
            except ValueError:
                pass
        return r.limit

    def _assess(self, tr: _Tracked) -> Prediction | None:
        s = self.settings
        m = tr.model
        if m.n < s.min_buckets:
            return None
        horizon = s.horizon_hours * 3600.0
        limit = self._limit(tr)
        below = tr.rule.direction == "below"
        eta, conf = m.time_to(limit, horizon, below=below)
        if eta > horizon or conf < s.min_confidence:
            if eta > 2 * horizon:
                tr.last_eta = math.inf  # cleared: the next warning is news
            return None
        now = m.b_start  # the bucket that just opened: sample time, not wall clock
        since = now - tr.last_emit_t
        if since < s.repeat_minutes * 60 and not eta < tr.last_eta / 2:
            return None
        tr.last_emit_t, tr.last_eta = now, eta
        labels = tr.labels
        return Prediction(
            series=tr.sid, metric=tr.name,
            service=labels.get("service") or labels.get("app") or labels.get("job") or "unknown",
            labels=labels, current=float(m.level), limit=limit,
            breach_at=datetime.fromtimestamp(now + eta, UTC),
            seconds_to_breach=max(0.0, eta), confidence=round(conf, 4),
            slope_per_hour=m.slope * 3600.0,
            severity="critical" if eta < 3600.0 else "warning",
            time=datetime.fromtimestamp(now, UTC),
        )

    # ------------------------------------------------------------ state
    def take_dirty(self, tag: int | None = None) -> dict[str, bytes]:
        taken = [sid for sid in self._dirty if tag is None or self.tracked[sid].tag == tag]
        self._dirty.difference_update(taken)
        return {sid: self.tracked[sid].to_bytes() for sid in taken}

    def dirty_sids(self, tag: int | None = None) -> list[str]:
        return [sid for sid in self._dirty if tag is None or self.tracked[sid].tag == tag]

    def take(self, sids: Iterable[str]) -> dict[str, bytes]:
        out = {}
        for sid in sids:
            tr = self.tracked.get(sid)
            if tr is not None:
                self._dirty.discard(sid)
                out[sid] = tr.to_bytes()
        return out

    def forget(self, tags: Iterable[int]) -> int:
        tags = set(tags)
        gone = [sid for sid, tr in self.tracked.items() if tr.tag in tags]
        if gone:
            self._by_key = {k: tr for k, tr in self._by_key.items() if tr.tag not in tags}
        for sid in gone:
            del self.tracked[sid]
            self._dirty.discard(sid)
            self._runs.pop(sid, None)
        return len(gone)

    def describe(self) -> list[dict[str, Any]]:
        """Current forecasts of followed series (for the baseline views)."""
        out = []
        horizon = self.settings.horizon_hours * 3600.0
        for tr in self.tracked.values():
            limit = self._limit(tr)
            eta, conf = tr.model.time_to(limit, horizon, below=tr.rule.direction == "below")
            out.append({"series": tr.sid, "limit": limit, "buckets": tr.model.n,
                        "level": tr.model.level, "slope_per_hour": tr.model.slope * 3600.0,
                        "seconds_to_breach": None if math.isinf(eta) else eta,
                        "confidence": conf})
        return out
