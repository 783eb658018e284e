"""Metric detection stage: batches of samples in, anomaly open/resolve events out.

Pure: no Kafka, no clock. Every series is a row of a :class:`TailBank`; a
batch is split into *rounds* (the 1st point of every series, then the 2nd...)
and each round is scored and learned in one vectorised step. State that
changed is reported by :meth:`MetricDetector.take_dirty` so the stream layer
can checkpoint it to the table once per batch/interval, not per sample.

An anomaly opens when a warm series' shown score (the calibrated score with its
peak held, see :mod:`~sre_agent.models.tailbank`) reaches ``threshold`` (the
metric's override or ``anomaly_detection.threshold``) and resolves, with the
same ``anomaly_id``, after :data:`RECOVERY_SAMPLES` consecutive samples below
``HYSTERESIS * threshold``: one event per episode.

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

import fnmatch
import hashlib
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..config import AnomalySettings
from ..models.tailbank import DETECTORS, LAST_T, N, USER, USER_COLS, TailBank
from ..schemas import Anomaly, MetricBatch, series_id
from ..schemas.telemetry import series_key

__all__ = ["HYSTERESIS", "RECOVERY_SAMPLES", "MetricDetector", "anomaly_id"]

log = logging.getLogger(__name__)

#: consecutive calm samples needed to close an open anomaly
RECOVERY_SAMPLES = 3
#: a sample is calm when its score is below this fraction of the threshold
HYSTERESIS = 0.8
#: alert bookkeeping columns in the bank row
OPEN, OPENED_T, NRUN, PEAK = USER, USER + 1, USER + 2, USER + 3
#: 9: the tail's shape from the share of excesses beyond 4 medians, the resolution floor
#: (8: generalised Pareto tail shape, migrated on load; 7: previous regime; 6: one alert per
#: cluster; 5: declustered tail; older state is relearned)
_VERSION = b"\x09"
_V8 = b"\x08"
_chain = itertools.chain.from_iterable


def anomaly_id(sid: str, opened_t: float) -> str:
    """Deterministic id of the anomaly of ``sid`` opened at ``opened_t``."""
    return hashlib.blake2b(f"{sid}@{opened_t!r}".encode(), digest_size=12).hexdigest()


def service_of(labels: dict[str, str]) -> str:
    return labels.get("service") or labels.get("app") or labels.get("job") or "unknown"


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
    bank_kw
        Passed to :class:`~sre_agent.models.tailbank.TailBank` (e.g. ``rel_floor``).
    """

    def __init__(self, settings: AnomalySettings,
                 load: Callable[[str], bytes | None] | None = None, **bank_kw: Any) -> None:
        self.settings = settings
        self._load = load
        self.bank = TailBank(warmup=settings.warmup_samples, **bank_kw)
        self.slot_of: dict[str, int] = {}
        #: a series' key (``"id"`` of a resolved ``metrics`` series: the series
        #: directory checked it against the labels) -> slot: the hot path's lookup,
        #: on a string the directory holds anyway (issue 18: no tuple per series)
        self._by_key: dict[str, int] = {}
        #: flat key ``(name, *label names, *label values)`` -> slot: the lookup of
        #: series without a key, without hashing the series id (flat: one tuple per
        #: series, not one per label pair)
        self._fast: dict[tuple[str, ...], int] = {}
        #: per slot (None when free): the series id, its name, and its labels: the
        #: labels dict of a keyed series (the directory's, shared), else the flat key
        #: (no second copy of the labels per series)
        self._sid: list[str | None] = []
        self._nm: list[str | None] = []
        self._lb: list[dict[str, str] | tuple[str, ...] | None] = []
        self._name = _SlotView(self._nm, _same)
        self._labels = _SlotView(self._lb, _labels_of)
        self._thr = np.zeros(0)
        self._tags = np.full(0, -1, np.int64)  #: per slot: caller's tag (the partition)
        self._dirty = np.zeros(0, bool)  #: per slot: changed since the last take_dirty
        self._history_run: dict[int, str] = {}
        #: series whose family is given another River detector (configuration
        #: ``anomaly_detection.detectors``): slot -> detector; the bank row still keeps
        #: the expected value, band and alert bookkeeping, the detector gives the score
        self._river: dict[int, Any] = {}
        self._is_river = np.zeros(0, bool)

    # ------------------------------------------------------------ series
    def threshold(self, metric: str) -> float:
        return self.settings.overrides.get(metric, self.settings.threshold)

    def detector_for(self, metric: str, labels: dict[str, str]) -> str:
        """The detector configured for a series (first matching rule)."""
        for rule in self.settings.detectors:
            if fnmatch.fnmatchcase(metric, rule.match) and all(
                    k in labels and fnmatch.fnmatchcase(labels[k], pat)
                    for k, pat in rule.labels.items()):
                return rule.detector
        return "calibrated_tail"

    def _make(self, kind: str) -> Any:
        from ..models.river_detectors import make_detector

        return make_detector(kind, warmup=self.settings.warmup_samples)

    def __len__(self) -> int:
        return len(self.slot_of)

    def _slot(self, name: str, labels: dict[str, str], key: str | None = None) -> int:
        """The slot of a series (created, with its saved state if any); ``key`` is its
        checked series key (``"id"``), registered for the hot path's lookup."""
        fk = None
        if key is None:
            fk = (name, *labels, *labels.values())
            slot = self._fast.get(fk)
        else:
            slot = self._by_key.get(key)
        if slot is not None:
            return slot
        sid = series_id(name, labels)
        slot = self.slot_of.get(sid)
        if slot is None:
            row = None
            raw = self._load(sid) if self._load else None
            if raw:
                try:
                    if raw[:1] == _V8:  # the previous layout: migrated, not relearned
                        row = self.bank.row_of_v8(raw[1:])
                    elif raw[:1] != _VERSION:
                        raise ValueError("unknown state version")
                    else:
                        row = self.bank.row_of(raw[1:])
                except ValueError:  # corrupt/old state: relearn rather than crash
                    log.warning("discarding unreadable state of %s", sid)
            slot = self.bank.add(row)
            self.slot_of[sid] = slot
            if slot >= len(self._sid):
                grow = slot + 1 - len(self._sid)
                self._sid.extend([None] * grow)
                self._nm.extend([None] * grow)
                self._lb.extend([None] * grow)
            self._sid[slot], self._nm[slot] = sid, name
            self._lb[slot] = fk if fk is not None else labels
            if slot >= len(self._thr):
                size = max(2 * len(self._thr), slot + 1, 1024)
                grow = size - len(self._thr)
                self._thr = np.concatenate([self._thr, np.zeros(grow)])
                self._tags = np.concatenate([self._tags, np.full(grow, -1, np.int64)])
                self._dirty = np.concatenate([self._dirty, np.zeros(grow, bool)])
                self._is_river = np.concatenate([self._is_river, np.zeros(grow, bool)])
            self._thr[slot] = self.threshold(name)
            kind = self.detector_for(name, labels)
            self._is_river[slot] = kind != "calibrated_tail"
            if self._is_river[slot]:
                self._river[slot] = self._make(kind)
            self._tags[slot], self._dirty[slot] = -1, False
        if fk is not None:
            self._fast[fk] = slot
        elif series_key(sid) == key:  # a key not the labels' own is never trusted
            self._by_key[key] = slot  # type: ignore[index]
        return slot

    # ------------------------------------------------------------ the stage
    def update(self, batch: MetricBatch, tag: int = -1) -> list[Anomaly]:
        """Score then learn every point of the batch; return anomaly transitions.

        ``tag`` is remembered per series (the stream layer passes the partition)
        and selects series in :meth:`take_dirty` and :meth:`forget`. A batch whose
        ``source`` is ``history:<run>`` bootstraps the series: the first such batch
        of a run replaces the series' model, and nothing is emitted.
        """
        run = batch.source[8:] if batch.source.startswith("history:") else None
        return self.update_series(batch.series, tag, history_run=run)

    def update_series(self, series: Sequence[Any], tag: int = -1,
                      history_run: str | None = None) -> list[Anomaly]:
        fast, by_key = self._fast, self._by_key
        slots: list[int] = []
        counts: list[int] = []
        for s in series:
            key = s.get("id")
            if key is not None:
                slot = by_key.get(key)
            else:
                labels = s["labels"]
                slot = fast.get((s["name"], *labels, *labels.values()))
            if slot is None:
                slot = self._slot(s["name"], s["labels"], key)
            slots.append(slot)
            counts.append(len(s["points"]))
        if not slots:
            return []
        arr = np.asarray(slots, np.int64)
        self._tags[arr] = tag
        self._dirty[arr] = True
        if history_run is not None:
            for slot in set(slots):
                if self._history_run.get(slot) != history_run:
                    self._history_run[slot] = history_run
                    keep = self.bank.S[slot, USER:USER + USER_COLS].copy()
                    self.bank.S[slot] = 0.0
                    self.bank.S[slot, USER:USER + USER_COLS] = keep
                    if slot in self._river:
                        self._river[slot] = self._make(self.detector_for(
                            self._name[slot], self._labels[slot]))
        if len(set(slots)) == len(slots):
            base = None
        else:  # a series twice in one batch: its points continue, in order
            seen: dict[int, int] = {}
            base = []
            for slot, c in zip(slots, counts):
                b = seen.get(slot, 0)
                base.append(b)
                seen[slot] = b + c
        total = sum(counts)
        if total == 0:
            return []
        tv = np.fromiter(_chain(_chain(s["points"] for s in series)), np.float64, 2 * total)
        return self.update_arrays(np.repeat(arr, counts), tv[0::2], tv[1::2],
                                  _positions(counts, base), emit=history_run is None)

    def update_arrays(self, slot: np.ndarray, t: np.ndarray, v: np.ndarray, pos: np.ndarray,
                      emit: bool = True, scores: np.ndarray | None = None) -> list[Anomaly]:
        """Process samples given as arrays; ``pos`` orders each series' samples.

        If ``scores`` is given, each sample's combined score is written to it
        (the backtest uses this).
        """
        order = np.argsort(pos, kind="stable")
        spos = pos[order]
        bounds = np.flatnonzero(np.diff(spos)) + 1
        out: list[Anomaly] = []
        for idx in np.split(order, bounds):
            s = slot[idx]
            rv = None
            if self._river:
                rv = np.flatnonzero(self._is_river[s])
                S = self.bank.S
                rok = (t[idx][rv] > S[s[rv], LAST_T]) | (S[s[rv], N] == 0)
            res = self.bank.step(s, t[idx], v[idx])
            if rv is not None and len(rv):
                self._river_scores(s, t[idx], v[idx], res, rv, rok)
            if scores is not None:
                scores[idx] = res.score
            if emit:
                self._transitions(s, t[idx], v[idx], res, out)
        return out

    def _river_scores(self, s: np.ndarray, t: np.ndarray, v: np.ndarray, res: Any,
                      rv: np.ndarray, rok: np.ndarray) -> None:
        """Replace the scores of series given another River detector by its own
        (``score_one`` then ``learn_one``, samples in order; out-of-order ones score 0)."""
        for i, ok in zip(rv.tolist(), rok.tolist()):
            if not ok:
                sc = 0.0  # out of order: neither scored nor learned (as the bank)
            else:
                m = self._river[int(s[i])]
                x = {"t": float(t[i]), "y": float(v[i])}
                sc = float(m.score_one(x))
                m.learn_one(x)
            res.score[i] = res.point[i] = sc
            res.parts[i] = (sc, sc)

    def _transitions(self, s: np.ndarray, t: np.ndarray, v: np.ndarray, res: Any,
                     out: list[Anomaly]) -> None:
        S = self.bank.S
        thr = self._thr[s]
        score = res.score
        is_open = S[s, OPEN] > 0
        anomalous = res.warm & (score >= thr)
        new_open = anomalous & ~is_open
        if not new_open.any() and not is_open.any():
            return
        calm = res.warm & (score < thr * HYSTERESIS)
        nrun = np.where(anomalous, 0.0, np.where(calm, S[s, NRUN] + 1, 0.0))
        resolve = is_open & (nrun >= RECOVERY_SAMPLES)
        S[s, NRUN] = np.where(is_open, nrun, 0.0)
        S[s, PEAK] = np.where(is_open | new_open, np.maximum(S[s, PEAK], score), 0.0)
        for i in np.flatnonzero(new_open | resolve):
            slot = int(s[i])
            if new_open[i]:
                S[slot, OPEN], S[slot, OPENED_T], S[slot, NRUN] = 1.0, t[i], 0.0
                out.append(self._event(slot, i, t, v, res, "open"))
            else:
                out.append(self._event(slot, i, t, v, res, "resolved"))
                S[slot, OPEN:PEAK + 1] = 0.0

    def _event(self, slot: int, i: int, t: np.ndarray, v: np.ndarray, res: Any,
               status: str) -> Anomaly:
        S = self.bank.S
        sid, name, labels = self._sid[slot], self._name[slot], self._labels[slot]
        opened_t = float(S[slot, OPENED_T])
        thr = float(self._thr[slot])
        exp, scale, z = float(res.expected[i]), float(res.scale[i]), float(res.deviation[i])
        bz = self.bank.band_halfwidth(slot, thr)
        d = res.direction[i]
        score = float(res.score[i])
        sev_score = max(score, float(S[slot, PEAK]))
        return Anomaly(
            anomaly_id=anomaly_id(sid, opened_t),
            status=status,  # type: ignore[arg-type]
            series=sid,
            metric=name,
            service=service_of(labels),
            labels=labels,
            observed=float(v[i]),
            expected=exp,
            lower=exp - bz,
            upper=exp + bz,
            deviation=z,
            score=score,
            severity=_severity(sev_score),  # type: ignore[arg-type]
            direction="up" if d > 0 else "down" if d < 0 else "both",
            contributions={k: round(float(x), 4) for k, x in zip(DETECTORS, res.parts[i])},
            time=datetime.fromtimestamp(float(t[i]), UTC),
            started_at=datetime.fromtimestamp(opened_t, UTC),
        )

    # ------------------------------------------------------------ state
    def state_bytes(self, slot: int) -> bytes:
        return _VERSION + TailBank.row_bytes(self.bank.S[slot])

    def take_dirty(self, tag: int | None = None) -> dict[str, bytes]:
        """Pop the serialized state of series changed since the last call.

        With ``tag``, only series last updated with that tag are taken (the
        partition being processed); the others stay dirty.
        """
        mask = self._dirty if tag is None else self._dirty & (self._tags == tag)
        taken = np.flatnonzero(mask)
        self._dirty[taken] = False
        sid = self._sid
        return {sid[s]: self.state_bytes(s) for s in taken.tolist()}

    def dirty_sids(self, tag: int | None = None) -> list[str]:
        """Series changed since they were last taken (last updated with ``tag``)."""
        mask = self._dirty if tag is None else self._dirty & (self._tags == tag)
        sid = self._sid
        return [sid[s] for s in np.flatnonzero(mask).tolist()]

    def take(self, sids: Iterable[str]) -> dict[str, bytes]:
        """Pop the serialized state of these series now (e.g. after a transition)."""
        out = {}
        for sid in sids:
            slot = self.slot_of.get(sid)
            if slot is not None:
                self._dirty[slot] = False
                out[sid] = self.state_bytes(slot)
        return out

    def forget(self, tags: Iterable[int]) -> int:
        """Drop in-memory series with these tags (partitions revoked); return how many."""
        sid = self._sid
        gone = [s for s in np.flatnonzero(np.isin(self._tags, list(set(tags)))).tolist()
                if s < len(sid) and sid[s] is not None]
        for slot in gone:
            self._drop(slot)
        if gone:
            self._fast = {k: s for k, s in self._fast.items() if sid[s] is not None}
            self._by_key = {k: s for k, s in self._by_key.items() if sid[s] is not None}
        return len(gone)

    def _drop(self, slot: int) -> None:
        sid = self._sid[slot]
        self._sid[slot] = self._nm[slot] = self._lb[slot] = None
        del self.slot_of[sid]
        self._tags[slot], self._dirty[slot] = -1, False
        self._history_run.pop(slot, None)
        self._river.pop(slot, None)
        self._is_river[slot] = False
        self.bank.remove(slot)

    def band(self, sid: str, t: float, v: float | None = None) -> tuple[float, float, float] | None:
        """``(expected, lower, upper)`` of ``sid`` at ``t``; None if unknown or warming up."""
        slot = self.slot_of.get(sid)
        if slot is None or self.bank.S[slot, 0] < self.bank.warmup:
            return None
        exp, _ = self.bank.expected_at(slot, t)
        bz = self.bank.band_halfwidth(slot, float(self._thr[slot]))
        return exp, exp - bz, exp + bz

    def describe_open(self, slot: int) -> bool:
        return bool(self.bank.S[slot, OPEN] > 0)

    def describe(self, slot: int) -> dict[str, Any]:
        """What is learned about one series (for the baseline views)."""
        row = self.bank.S[slot]
        sid = self._sid[slot]
        t = float(row[1])
        exp, scale = self.bank.expected_at(slot, t)
        bz = self.bank.band_halfwidth(slot, float(self._thr[slot]))
        return {
            "series": sid, "metric": self._name[slot], "labels": self._labels[slot],
            "n": int(row[0]), "warm": int(row[0]) >= self.bank.warmup, "last_t": t,
            "expected": exp, "lower": exp - bz, "upper": exp + bz, "sigma": scale,
            "threshold": float(self._thr[slot]),
            "open": anomaly_id(sid, float(row[OPENED_T])) if row[OPEN] > 0 else None,
        }

    def find(self, substring: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        items = []
        for sid, slot in self.slot_of.items():
            if substring and substring not in sid:
                continue
            items.append(self.describe(slot))
            if len(items) >= limit:
                break
        return items


def _same(x: Any) -> Any:
    return x


def _labels_of(lb: dict[str, str] | tuple[str, ...]) -> dict[str, str]:
    """A slot's labels, a copy: from the shared dict, or from the flat key."""
    if isinstance(lb, dict):
        return dict(lb)
    n = (len(lb) - 1) // 2
    return dict(zip(lb[1:1 + n], lb[1 + n:]))


class _SlotView:
    """Read-only ``slot -> value`` derived from a per-slot list (name, labels)."""

    __slots__ = ("_of", "_get")

    def __init__(self, of: list[Any], get: Callable[[Any], Any]) -> None:
        self._of, self._get = of, get

    def __getitem__(self, slot: int) -> Any:
        x = self._of[slot] if 0 <= slot < len(self._of) else None
        if x is None:
            raise KeyError(slot)
        return self._get(x)

    def __contains__(self, slot: object) -> bool:
        return isinstance(slot, int) and 0 <= slot < len(self._of) and self._of[slot] is not None


def _positions(counts: list[int], base: list[int] | None) -> np.ndarray:
    """Index of each sample within its series: ``[b0, b0+1, .., b1, b1+1, ..]``."""
    c = np.asarray(counts, np.int64)
    pos = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
    if base is not None:
        pos += np.repeat(np.asarray(base, np.int64), c)
    return pos
