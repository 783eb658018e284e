"""``sre-agent eval --replay DIR``: real incidents through the streaming path, scored.

DIR is one case folder in the ``sre-agent rca offline`` format (``graph.csv``,
``metrics.csv``, ``incident.json``, optional ``logs.csv`` / ``events.csv``, and
``truth.json`` with ``root_cause_service``), or a folder of such case folders
(the Nezha dev set). For every case a fresh ``sre-agent worker`` (own topic
prefix, the case's graph as ``correlation.edges``) gets, through a real broker:

* the case's metrics as ``metrics`` batches (one per sample time) and its log
  lines as ``logs`` records, in time order;
* at ``start``, a firing Alertmanager alert on the symptom service — what
  pages a human (the offline command gets the same ``start`` from
  ``incident.json``). As on a live platform, what happened before the page
  reaches the worker first: the history up to ``start`` (earlier faults of the
  recorded hour included) is produced, the replay waits until the worker has
  read it and its stages went quiet, and only then sends the alert and the rest
  (sent all at once, the one alert overtook an hour of metrics still being
  detected, and the earlier faults' late anomalies joined the alert's incident).

Then the replay waits until the worker's RCA windows have caught up, the
refinement of the incident holding the alert is done and the outputs are
quiet, and scores the *last* ``rca-results`` of that incident: the distinct
services of its hypotheses, in order, against ``truth.json`` (AC@1, AC@3 per
system, per fault type and overall, like ``eval_rca.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ..processors.rca_logs import line_level
from ..schemas import Alert, LogRecord, MetricBatch, series_id, shard_of
from .rca_offline import InputError, load_dir

__all__ = ["CaseOutcome", "find_cases", "replay_case", "select_cases", "summarise"]

log = logging.getLogger(__name__)

SHARDS = 16
ALERT_NAME = "RcaReplaySymptom"


def find_cases(root: Path) -> list[Path]:
    """Case folders under ``root`` (``root`` itself when it is one), sorted by name."""
    if (root / "incident.json").is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    cases = sorted(p for p in root.iterdir() if (p / "incident.json").is_file())
    if not cases:
        raise InputError(f"{root}: no case folders (with incident.json) inside")
    return cases


def select_cases(cases: list[Path], limit: int, only: str | None = None) -> list[Path]:
    """``only`` filters by substring; ``limit`` > 0 takes that many spread evenly."""
    if only:
        cases = [c for c in cases if only in c.name]
    if 0 < limit < len(cases):
        step = len(cases) / limit
        cases = [cases[int(i * step)] for i in range(limit)]
    return cases


@dataclass
class CaseOutcome:
    case: str
    truth: str
    system: str
    fault_type: str
    ranked: list[str] = field(default_factory=list)
    incident_id: str | None = None
    rca_results: int = 0
    error: str | None = None
    seconds: float = 0.0
    #: the worker had taken in the history before the alert was sent
    settled: bool | None = None
    #: the scored incident: its first signals (seconds from the start, service, metric)
    first_signals: list[tuple[float, str, str]] = field(default_factory=list)
    #: incidents the worker opened in the whole replay
    incidents: int = 0
    #: every incident of the replay: opened (s from the start), resolved, root, services
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rank(self) -> int | None:
        return self.ranked.index(self.truth) + 1 if self.truth in self.ranked else None


def _truth(case: Path) -> dict[str, Any]:
    p = case / "truth.json"
    if not p.is_file():
        raise InputError(f"{case.name}: truth.json missing (needed to score)")
    t = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(t, dict) or not t.get("root_cause_service"):
        raise InputError(f"{case.name}/truth.json: expected root_cause_service")
    return t


def _batches(rows: list[tuple[float, str, str, float]]) -> list[MetricBatch]:
    """One batch per (sample time, shard), in time order."""
    by: dict[tuple[float, int], dict[tuple[str, str], list[tuple[float, float]]]] = \
        defaultdict(lambda: defaultdict(list))
    for t, svc, metric, v in rows:
        shard = shard_of(series_id(metric, {"service": svc}), SHARDS)
        by[(t, shard)][(svc, metric)].append((t, v))
    out = []
    for (t, shard), series in sorted(by.items()):
        out.append(MetricBatch(time=datetime.fromtimestamp(t, UTC), source="replay", shard=shard,
                               series=[{"name": m, "labels": {"service": s}, "points": pts}
                                       for (s, m), pts in sorted(series.items())]))
    return out


def _logs(lines: list[tuple[float, str, str]]) -> list[LogRecord]:
    out = []
    for t, svc, msg in lines:
        level = line_level(msg)[0].lower() or "info"
        out.append(LogRecord(service=svc, level=level, message=msg[:16384],
                             time=datetime.fromtimestamp(t, UTC)))
    return out


async def replay_case(case: Path, bootstrap: str, prefix: str, status_url: str,
                      after: float = 300.0, timeout: float = 600.0) -> CaseOutcome:
    """Produce one case into a running worker's topics and read its RCA back."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    import aiohttp

    truth = _truth(case)
    out = CaseOutcome(case.name, str(truth["root_cause_service"]),
                      str(truth.get("system", "?")), str(truth.get("fault_type", "?")))
    data = load_dir(case)
    start = float(data["start"])
    symptom = (data.get("symptom") or {}).get("service")
    if not symptom:
        raise InputError(f"{case.name}: incident.json has no symptom service to alert on")
    fingerprint = f"replay-{case.name}"[:200]
    alert = Alert(fingerprint=fingerprint, name=ALERT_NAME, service=symptom, severity="critical",
                  labels={"service": symptom, "metric": str(data["symptom"].get("metric", ""))},
                  annotations={"summary": f"{symptom} symptom (replayed incident start)"},
                  starts_at=datetime.fromtimestamp(start, UTC),
                  time=datetime.fromtimestamp(start, UTC))
    events: list[tuple[float, int, str, Any]] = []
    for b in _batches(data["rows"]):
        events.append((b.time.timestamp(), 1, "metrics", b))
    for r in _logs(data["logs"]):
        events.append((r.time.timestamp(), 2, "logs", r))
    events.append((start, 0, "alerts", alert))
    events.sort(key=lambda e: (e[0], e[1]))
    last_t = max(e[0] for e in events)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=8 * 1024 * 1024)
    consumer = AIOKafkaConsumer(prefix + "incidents", prefix + "rca-results",
                                bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", metadata_max_age_ms=2000)
    incidents: dict[str, dict[str, Any]] = {}
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    await producer.start()
    await consumer.start()
    wall = time.monotonic()
    try:
        from ..schemas import encode

        produced: dict[str, int] = defaultdict(int)

        async def send(batch: list[tuple[float, int, str, Any]]) -> None:
            for _, _, topic, ev in batch:
                key = ev.key()
                await producer.send(prefix + topic, value=encode(ev),
                                    key=key.encode() if key is not None else None)
                produced[topic] += 1
            await producer.flush()

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            # what happened before the page reaches the worker before the page does, as
            # on a live platform: the history up to the start (its earlier faults
            # included) is taken in and acted on, then the alert, then the rest
            await send([e for e in events if e[0] <= start and e[2] != "alerts"])
            out.settled = await _settle(http, status_url, produced, timeout / 2)
            await send([e for e in events if e[0] > start or e[2] == "alerts"])
            done_since: float | None = None
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                batches = await consumer.getmany(timeout_ms=300, max_records=5000)
                for tp, recs in batches.items():
                    for r in recs:
                        m = orjson.loads(r.value or b"null")
                        if not isinstance(m, dict):
                            continue
                        if tp.topic.endswith("incidents"):
                            incidents[str(m.get("incident_id"))] = m
                        else:
                            results[str(m.get("incident_id"))].append(m)
                mine = [i for i, m in incidents.items()
                        if any(s.get("ref") == fingerprint for s in m.get("signals", []))]
                out.incident_id = mine[-1] if mine else None
                ready = False
                if out.incident_id and results.get(out.incident_id):
                    try:
                        async with http.get(status_url) as resp:
                            st = await resp.json(loads=orjson.loads)
                        health = st.get("health", {})
                        clock = (health.get("rca_windows") or {}).get("clock") or 0
                        engine = health.get("rca_engine") or {}
                        ready = (clock >= min(last_t, start + after)
                                 and "pending_ids" in engine
                                 and out.incident_id not in engine["pending_ids"])
                    except Exception:  # noqa: BLE001 - busy worker: poll again
                        ready = False
                if ready and not batches:
                    done_since = done_since or time.monotonic()
                    if time.monotonic() - done_since >= 3.0:  # refinement tick + delivery
                        break
                else:
                    done_since = None
            else:
                out.error = "timed out waiting for the RCA" if out.incident_id else \
                    "no incident held the replayed alert"
    finally:
        await consumer.stop()
        await producer.stop()
    out.seconds = round(time.monotonic() - wall, 1)
    out.incidents = len(incidents)

    def rel(v: Any) -> float | None:
        try:
            return round(datetime.fromisoformat(str(v)).timestamp() - start, 1)
        except ValueError:
            return None

    for iid, m in sorted(incidents.items(), key=lambda kv: str(kv[1].get("opened_at"))):
        out.timeline.append({"id": iid, "opened": rel(m.get("opened_at")),
                             "resolved": rel(m.get("resolved_at")) if m.get("resolved_at") else None,
                             "status": m.get("status"), "root": m.get("root_service"),
                             "services": m.get("services"), "scored": iid == out.incident_id})
    mine_inc = incidents.get(out.incident_id or "") or {}
    sigs = sorted(mine_inc.get("signals", []), key=lambda x: str(x.get("time")))
    for x in sigs[:5]:
        try:
            at = datetime.fromisoformat(str(x.get("time"))).timestamp() - start
        except ValueError:
            continue
        live = "" if (x.get("attrs") or {}).get("active", True) else " (recovered)"
        out.first_signals.append((round(at, 1), str(x.get("service")),
                                  f"{x.get('metric') or x.get('kind')}{live}"))
    rs = results.get(out.incident_id or "", [])
    out.rca_results = len(rs)
    if rs:
        for h in rs[-1].get("hypotheses", []):
            s = str(h.get("service"))
            if s not in out.ranked:
                out.ranked.append(s)
    return out


async def _settle(http: Any, status_url: str, produced: dict[str, int], timeout: float,
                  still_for: float = 2.0) -> bool:
    """Wait until the worker has read everything produced (no consumer lag) and its
    stages went quiet (event counters unchanged for ``still_for`` seconds)."""
    end = time.monotonic() + timeout
    prev: tuple[int, int] | None = None
    since = time.monotonic()
    while time.monotonic() < end:
        try:
            async with http.get(status_url) as resp:
                st = await resp.json(loads=orjson.loads)
        except Exception:  # noqa: BLE001 - busy worker: poll again
            st = None
        if st is not None:
            ins, outs = st.get("events_in", {}), st.get("events_out", {})
            fed = all(ins.get(t, 0) >= n for t, n in produced.items()) \
                and not st.get("lag_total", 0)
            sig = (sum(ins.values()), sum(outs.values()))
            if not fed or sig != prev:
                prev, since = sig, time.monotonic()
            elif time.monotonic() - since >= still_for:
                return True
        await asyncio.sleep(0.25)
    return False


def summarise(outcomes: list[CaseOutcome]) -> dict[str, Any]:
    """AC@1 / AC@3 per system, per system and fault type, and overall."""
    groups: dict[str, list[CaseOutcome]] = defaultdict(list)
    for o in outcomes:
        groups[f"system={o.system}"].append(o)
        groups[f"{o.system}/{o.fault_type}"].append(o)
        groups["overall"].append(o)

    def ac(os_: list[CaseOutcome], k: int) -> float:
        return round(sum(1 for o in os_ if o.rank is not None and o.rank <= k) / len(os_), 3)

    return {name: {"n": len(g), "ac1": ac(g, 1), "ac3": ac(g, 3)}
            for name, g in sorted(groups.items(), key=lambda kv: (kv[0] != "overall", kv[0]))}


def render(summary: dict[str, Any], say: Callable[[str], None] = print) -> None:
    say(f"{'group':42} {'n':>4} {'AC@1':>6} {'AC@3':>6}")
    for name, g in summary.items():
        say(f"{name:42} {g['n']:>4} {g['ac1']:>6.3f} {g['ac3']:>6.3f}")
