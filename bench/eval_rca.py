"""Noise reduction and RCA accuracy on generated scenarios; RCA on real incidents (--nezha).

    python bench/eval_rca.py [--scenarios 300] [--offline 60] [--seed 7] [--json out.json]
    python bench/eval_rca.py --nezha ../shared/devdata/nezha/nezha [--naive naive_maxz.py]

``--nezha DIR`` runs the RCA engine in-process (the code ``sre-agent rca
offline`` runs, without one process per case) on every case folder of DIR and
scores it against ``truth.json`` per system, per fault type and overall (AC@1,
AC@3, Avg@5 as RCAEval defines them); with ``--naive SCRIPT`` a reference
ranker with the same CLI contract (the data set's ``naive_maxz.py``) is scored
on the same cases in the same run. Real incidents are the quality evidence;
the generated scenarios below only check the wiring.

Each scenario draws a random layered service graph (frontends -> services ->
datastores), injects one fault of a known ``cause_type`` at a known root
service, and produces what monitoring would: anomalies, alerts re-sent every
30-60 s (Alertmanager repeat), a flapping alert, per-pod k8s events, symptoms
propagating to the (transitive) callers with a lag per hop, and distractors
(an older deploy of an unrelated service, a noise anomaly elsewhere).

* **noise reduction** — raw signals vs incidents opened by the real
  :class:`IncidentCorrelator` (``1 - incidents / signals``), plus how often the
  fault's symptoms ended up in exactly one incident;
* **stream RCA** — top-1/top-3 of ``(cause_type, service)`` and of the service
  alone, from :class:`RootCauseAnalyzer` on the incident holding the root;
* **offline RCA** — top-1/top-3 service of ``analyze_offline`` on generated
  metrics (same graph/fault families, 10 s samples, 1 h history + 20 min).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sre_agent.config import CorrelationSettings  # noqa: E402
from sre_agent.processors.correlate import GroupState, IncidentCorrelator  # noqa: E402
from sre_agent.processors.correlate_signals import (  # noqa: E402
    Signal,
    from_alert,
    from_anomaly,
    from_deploy,
    from_k8s,
    from_prediction,
)
from sre_agent.processors.rca import RootCauseAnalyzer  # noqa: E402
from sre_agent.processors.rca_offline import analyze_offline  # noqa: E402
from sre_agent.processors.topology import ServiceGraph  # noqa: E402
from sre_agent.schemas import Alert, Anomaly, DeployEvent, K8sEvent, Prediction  # noqa: E402

T0 = 1_800_000_000.0
CAUSES = ["bad_deploy", "config_change", "memory_leak", "db_pool_exhaustion", "traffic_surge",
          "disk_saturation", "crash_loop", "node_pressure", "slow_dependency",
          "dependency_failure", "resource_saturation"]
DATASTORE_CAUSES = {"db_pool_exhaustion", "disk_saturation", "slow_dependency"}


def dt(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, UTC)


def make_graph(rng: random.Random) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    layers = {"front": [f"web{i}" for i in range(rng.randint(1, 2))],
              "mid": [f"svc{i}" for i in range(rng.randint(3, 5))],
              "store": [f"db{i}" for i in range(rng.randint(1, 2))] + [
                  f"cache{i}" for i in range(rng.randint(1, 2))]}
    edges = set()
    for a in layers["front"]:
        for b in rng.sample(layers["mid"], rng.randint(2, len(layers["mid"]))):
            edges.add((a, b))
    for a in layers["mid"]:
        for b in rng.sample(layers["store"], rng.randint(1, 2)):
            edges.add((a, b))
        if rng.random() < 0.3:
            other = rng.choice(layers["mid"])
            if other != a and (other, a) not in edges:
                edges.add((a, other))
    return sorted(edges), layers


class Gen:
    """Signals of one scenario, as monitoring would emit them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.signals: list[Signal] = []
        self.n = 0

    def anomaly(self, svc: str, metric: str, t: float, direction: str = "up",
                template: str | None = None, duration: float = 600) -> None:
        self.n += 1
        aid = f"a{self.n}"
        dev = 8.0 if direction == "up" else -8.0
        series = f'{metric}{{service="{svc}"}}'
        mk = lambda status, when: Anomaly(  # noqa: E731
            anomaly_id=aid, status=status, series=series, metric=metric, service=svc,
            observed=1, expected=0, lower=0, upper=0.5, deviation=dev,
            score=self.rng.uniform(0.8, 1.0), direction=direction, time=dt(when),
            started_at=dt(t), kind="log" if template else "metric", template=template)
        self.signals.append(from_anomaly(mk("open", t)))
        self.signals.append(from_anomaly(mk("resolved", t + duration)))

    def alert(self, svc: str, name: str, t: float, duration: float = 600,
              severity: str = "warning", flap: bool = False) -> None:
        fp = f"{name}-{svc}"
        step = self.rng.uniform(30, 60)
        k = 0.0
        while k < duration:
            self.signals.append(from_alert(Alert(fingerprint=fp, name=name, severity=severity,
                                                 labels={"service": svc}, time=dt(t + k),
                                                 starts_at=dt(t))))
            if flap and k > 0 and self.rng.random() < 0.5:
                self.signals.append(from_alert(Alert(fingerprint=fp, name=name, status="resolved",
                                                     labels={"service": svc},
                                                     time=dt(t + k + 5))))
            k += step
        self.signals.append(from_alert(Alert(fingerprint=fp, name=name, status="resolved",
                                             labels={"service": svc}, time=dt(t + duration))))

    def k8s(self, svc: str, reason: str, t: float, pods: int = 3, message: str = "") -> None:
        for p in range(pods):
            for r in range(self.rng.randint(1, 3)):
                e = from_k8s(K8sEvent(name=f"{svc}-7d9f8b6c4-p{p:04d}", reason=reason,
                                      message=message, time=dt(t + 20 * r + p)))
                if e:
                    self.signals.append(e)

    def deploy(self, svc: str, t: float, change: str = "deploy") -> None:
        self.n += 1
        self.signals.append(from_deploy(DeployEvent(
            app=svc, service=svc, revision=f"r{self.n}", change_type=change,  # type: ignore[arg-type]
            time=dt(t), event_id=f"dep{self.n}", author="ci")))

    def prediction(self, svc: str, metric: str, t: float) -> None:
        self.signals.append(from_prediction(Prediction(
            series=f'{metric}{{service="{svc}"}}', metric=metric, service=svc, current=0.8,
            limit=1.0, breach_at=dt(t + 3600), seconds_to_breach=3600, confidence=0.85,
            slope_per_hour=0.2, time=dt(t))))


def inject(g: Gen, cause: str, root: str, t: float) -> None:
    r = g.rng
    if cause in ("bad_deploy", "config_change"):
        g.deploy(root, t - r.uniform(30, 600), "config" if cause == "config_change" else "deploy")
        g.anomaly(root, "http_error_rate", t)
        g.alert(root, "HighErrorRate", t + 15, severity="critical")
        if r.random() < 0.5:
            g.anomaly(root, "latency_p99", t + 5)
    elif cause == "memory_leak":
        g.prediction(root, "container_memory_working_set_bytes", t - 900)
        g.anomaly(root, "container_memory_working_set_bytes", t)
        g.k8s(root, "OOMKilled", t + 60)
        g.anomaly(root, "latency_p99", t + 70)
    elif cause == "db_pool_exhaustion":
        g.anomaly(root, "db_connections_active", t)
        g.alert(root, "PostgresTooManyConnections", t + 10, severity="critical")
    elif cause == "traffic_surge":
        g.anomaly(root, "http_requests_per_second", t)
        g.anomaly(root, "cpu_usage", t + 20)
        g.anomaly(root, "latency_p99", t + 30)
    elif cause == "disk_saturation":
        g.anomaly(root, "disk_used_bytes", t)
        g.alert(root, "DiskAlmostFull", t + 30)
        g.anomaly(root, "write_latency_ms", t + 60)
    elif cause == "crash_loop":
        g.k8s(root, "BackOff", t, message="Back-off restarting failed container")
        g.anomaly(root, "http_error_rate", t + 20)
    elif cause == "node_pressure":
        g.k8s(root, "FailedScheduling", t, pods=2, message="0/5 nodes are available")
        g.k8s(root, "Evicted", t + 10, pods=2, message="The node was low on resource: memory")
    elif cause == "slow_dependency":
        g.anomaly(root, "query_latency_ms", t)
        g.alert(root, "SlowQueries", t + 20)
    elif cause == "dependency_failure":
        g.anomaly(root, "http_error_rate", t)
        g.anomaly(root, "availability", t + 5, direction="down")
        g.alert(root, "ServiceDown", t + 10, severity="critical")
    elif cause == "resource_saturation":
        g.anomaly(root, "cpu_usage", t)
        g.alert(root, "CPUThrottlingHigh", t + 20)
        g.anomaly(root, "latency_p99", t + 40)


def propagate(g: Gen, graph: ServiceGraph, cause: str, root: str, t: float) -> None:
    """Callers (up to two hops) see latency, and errors unless the root is only slow."""
    latency_only = cause in ("slow_dependency", "resource_saturation", "traffic_surge",
                             "disk_saturation")
    frontier, seen, hop = [root], {root}, 0
    while frontier and hop < 2:
        hop += 1
        nxt = []
        for s in frontier:
            for c in graph.callers(s):
                if c in seen:
                    continue
                seen.add(c)
                nxt.append(c)
                lag = t + hop * g.rng.uniform(10, 45)
                g.anomaly(c, "latency_p99", lag)
                if not latency_only:
                    g.anomaly(c, "http_error_rate", lag + 3)
                    if cause == "db_pool_exhaustion" and hop == 1:
                        g.anomaly(c, "log_errors", lag + 1,
                                  template="HikariPool-1 - Connection is not available, "
                                           "request timed out after <*>ms")
                g.alert(c, "HighLatency", lag + 20, flap=g.rng.random() < 0.3)
        frontier = nxt


def roughen(g: Gen, sc_root: str, graph: ServiceGraph, t: float) -> None:
    """The hard profile: missing signals, late detection of the root, close distractors."""
    r = g.rng
    kept = []
    for s in g.signals:
        if s.service != sc_root and s.kind in ("anomaly", "alert") and r.random() < 0.15:
            continue  # a symptom the monitoring missed
        kept.append(s)
    g.signals = kept
    if r.random() < 0.3:  # the root's own first signals are detected late (up to 90 s)
        delay = r.uniform(0, 90)
        first = min((s.ts for s in g.signals if s.service == sc_root), default=None)
        g.signals = [s.model_copy(update={"time": dt(s.ts - T0 + delay)})
                     if s.service == sc_root and first is not None and s.ts - first < 60
                     and s.kind != "deploy" else s for s in g.signals]
    near = sorted(graph.neighbours(sc_root))
    if near and r.random() < 0.25:  # an unrelated deploy of a neighbour minutes before
        g.deploy(r.choice(near), t - r.uniform(120, 900))
    callees = graph.callees(sc_root)
    if callees and r.random() < 0.3:  # a noise anomaly in a dependency, close in time
        g.anomaly(r.choice(callees), r.choice(["gc_pause_seconds", "latency_p99", "cpu_usage"]),
                  t + r.uniform(-120, 120), duration=120)


def scenario(rng: random.Random, hard: bool = False) -> dict[str, Any]:
    edges, layers = make_graph(rng)
    graph = ServiceGraph(edges)
    cause = rng.choice(CAUSES)
    pool = layers["store"] if cause in DATASTORE_CAUSES else (
        layers["mid"] + (layers["store"] if cause in ("memory_leak", "crash_loop") else []))
    if cause in ("dependency_failure", "slow_dependency"):  # defined by propagation
        pool = [s for s in pool if graph.callers(s)] or pool
    root = rng.choice(pool)
    g = Gen(rng)
    t = 3600.0
    inject(g, cause, root, t)
    propagate(g, graph, cause, root, t)
    others = [s for s in graph.services if s != root and s not in graph.upstream(root)]
    if others and rng.random() < 0.6:  # an older deploy of an unrelated service
        g.deploy(rng.choice(others), t - rng.uniform(1800, 5400))
    if others and rng.random() < 0.4:  # background noise elsewhere
        g.anomaly(rng.choice(others), "gc_pause_seconds", t + rng.uniform(-300, 300), duration=120)
    if hard:
        roughen(g, root, graph, t)
    g.signals.sort(key=lambda s: s.ts)
    return {"edges": edges, "cause": cause, "root": root, "signals": g.signals}


def run_stream(n: int, seed: int, hard: bool = False) -> dict[str, Any]:
    rng = random.Random(seed)
    raw = opened = single = distinct = 0
    top1 = top3 = svc1 = svc3 = 0
    per_cause: dict[str, Counter[str]] = defaultdict(Counter)
    confusion: Counter[tuple[str, str]] = Counter()
    for _ in range(n):
        sc = scenario(rng, hard)
        settings = CorrelationSettings(edges=sc["edges"], resolve_holddown=120)
        c = IncidentCorrelator(settings)
        states: dict[str, GroupState] = {}
        latest: dict[str, Any] = {}
        for sig in sc["signals"]:
            grp = c.group_of(sig.service)
            st = states.setdefault(grp, GroupState(group=grp))
            for inc in c.update(st, sig, now=sig.ts):
                latest[inc.incident_id] = inc
        for grp, st in states.items():
            for inc in c.tick(st, now=T0 + 10 ** 6):
                latest.setdefault(inc.incident_id, inc)
        raw += c.stats.signals_in
        distinct += len({s.fingerprint for s in sc["signals"]
                         if s.kind != "deploy" and s.status == "firing"})
        opened += c.stats.incidents_opened
        holding = [i for i in latest.values() if sc["root"] in i.services]
        single += len(holding) == 1
        # the state the RCA saw last before resolution: the last open/updated event
        inc = max(holding, key=lambda i: i.signal_count)
        res = RootCauseAnalyzer(ServiceGraph(sc["edges"])).analyze(inc)
        ranked = [(h.cause_type, h.service) for h in res.hypotheses]
        truth = (sc["cause"], sc["root"])
        services = list(dict.fromkeys(s for _, s in ranked))
        top1 += bool(ranked) and ranked[0] == truth
        top3 += truth in ranked[:3]
        svc1 += bool(services) and services[0] == sc["root"]
        svc3 += sc["root"] in services[:3]
        per_cause[sc["cause"]]["n"] += 1
        per_cause[sc["cause"]]["top1"] += bool(ranked) and ranked[0] == truth
        if ranked and ranked[0] != truth:
            confusion[(sc["cause"], ranked[0][0] if ranked[0][1] == sc["root"] else
                       f"{ranked[0][0]}@other")] += 1
    return {"scenarios": n, "raw_signals": raw, "incidents": opened,
            "noise_reduction": round(1 - opened / raw, 4),
            "distinct_fingerprints": distinct,
            "noise_reduction_vs_distinct": round(1 - opened / distinct, 4),
            "root_in_one_incident": round(single / n, 4),
            "top1_cause_and_service": round(top1 / n, 4), "top3_cause_and_service": round(top3 / n, 4),
            "top1_service": round(svc1 / n, 4), "top3_service": round(svc3 / n, 4),
            "per_cause_top1": {k: f"{v['top1']}/{v['n']}" for k, v in sorted(per_cause.items())},
            "top_confusions": [f"{a} -> {b}: {k}" for (a, b), k in confusion.most_common(6)]}


OFFLINE_FAULTS = {  # root metric changes: (metric, factor or delta, kind)
    "latency": ("latency", 6.0), "errors": ("error_rate", 20.0), "cpu": ("cpu", 2.5),
    "memory": ("memory", 1.8), "availability": ("availability", 0.7),
}


def offline_case(rng: random.Random) -> tuple[dict[str, Any], str]:
    edges, layers = make_graph(rng)
    graph = ServiceGraph(edges)
    fault = rng.choice(list(OFFLINE_FAULTS))
    root = rng.choice(layers["mid"] + layers["store"])
    start = 3600.0
    lag: dict[str, float] = {root: 0.0}
    frontier = [root]
    while frontier:
        nxt = []
        for s in frontier:
            for c in graph.callers(s):
                if c not in lag:
                    lag[c] = lag[s] + rng.uniform(10, 40)
                    nxt.append(c)
        frontier = nxt
    base = {s: {"latency": rng.uniform(5, 200), "error_rate": rng.uniform(0.001, 0.02),
                "cpu": rng.uniform(0.1, 0.6), "memory": rng.uniform(2e8, 2e9),
                "requests": rng.uniform(50, 2000), "availability": 0.999} for s in graph.services}
    rows = []
    for i in range(int((start + 1200) / 10)):
        t = i * 10.0
        for s in graph.services:
            for m, b in base[s].items():
                noise = 0.001 if m == "availability" else 0.05
                v = b * (1 + rng.gauss(0, noise))
                if s in lag and t >= start + lag[s]:
                    if s == root:
                        metric, f = OFFLINE_FAULTS[fault]
                        if m == metric:
                            v *= f
                        if m == "latency" and fault != "latency":
                            v *= 2.0
                    elif m == "latency":
                        v *= 2.5
                    elif m == "error_rate" and fault in ("errors", "availability"):
                        v *= 8
                if m == "availability":
                    v = min(v, 1.0)
                rows.append((T0 + t, s, m, v))
    symptom = next((s for s in layers["front"] if s in lag), None)
    return {"edges": edges, "rows": rows, "start": T0 + start,
            "symptom": {"service": symptom, "metric": "latency"} if symptom else None}, root


def run_offline(n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    top1 = top3 = 0
    t0 = time.perf_counter()
    for _ in range(n):
        case, root = offline_case(rng)
        ranked = [c["service"] for c in analyze_offline(**case)["candidates"]]
        top1 += ranked[0] == root
        top3 += root in ranked[:3]
    return {"scenarios": n, "top1_service": round(top1 / n, 4), "top3_service": round(top3 / n, 4),
            "seconds_per_case": round((time.perf_counter() - t0) / max(n, 1), 3)}


def _avg5(ranks: list[int | None]) -> float:
    return sum(sum(1 for r in ranks if r is not None and r <= k) / len(ranks)
               for k in range(1, 6)) / 5


def _groups(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    by: dict[str, list[int | None]] = defaultdict(list)
    for r in rows:
        by[f"system={r['system']}"].append(r[key])
        by[f"fault={r['fault_type']}"].append(r[key])
        by[f"{r['system']}/{r['fault_type']}"].append(r[key])
        by["overall"].append(r[key])
    return {g: {"n": len(rs), "ac1": round(sum(1 for x in rs if x == 1) / len(rs), 3),
                "ac3": round(sum(1 for x in rs if x is not None and x <= 3) / len(rs), 3),
                "avg5": round(_avg5(rs), 3)} for g, rs in sorted(by.items())}


def run_nezha(root: Path, naive: Path | None) -> dict[str, Any]:
    """The engine (and optionally a reference script) on every case folder of ``root``."""
    import subprocess

    from sre_agent.commands.rca_offline import load_dir

    rows = []
    t0 = time.perf_counter()
    for d in sorted(p for p in root.iterdir() if (p / "truth.json").is_file()):
        truth = json.loads((d / "truth.json").read_text())
        ranked = [c["service"] for c in analyze_offline(**load_dir(d))["candidates"]]
        rc = truth["root_cause_service"]
        row: dict[str, Any] = {"case": d.name, "system": truth.get("system", "?"),
                               "fault_type": truth.get("fault_type", "?"), "truth": rc,
                               "rank": ranked.index(rc) + 1 if rc in ranked else None,
                               "top3": ranked[:3]}
        if naive is not None:
            res = subprocess.run([sys.executable, str(naive), str(d)], capture_output=True,
                                 text=True, timeout=300, check=False)
            try:
                nr = [c["service"] for c in json.loads(res.stdout)["candidates"]]
            except (ValueError, KeyError):
                nr = []
            row["naive_rank"] = nr.index(rc) + 1 if rc in nr else None
        rows.append(row)
    out: dict[str, Any] = {"cases": len(rows), "seconds": round(time.perf_counter() - t0, 1),
                           "engine": _groups(rows, "rank")}
    if naive is not None:
        out["naive"] = _groups(rows, "naive_rank")
    out["per_case"] = rows
    return out


def print_nezha(out: dict[str, Any]) -> None:
    naive = out.get("naive")
    head = f"{'group':36} {'n':>4}  {'engine AC@1/AC@3/Avg@5':>24}"
    print(head + (f"  {'naive AC@1/AC@3/Avg@5':>24}" if naive else ""))
    for g, v in out["engine"].items():
        line = f"{g:36} {v['n']:>4}  {v['ac1']:>8.3f}{v['ac3']:>8.3f}{v['avg5']:>8.3f}"
        if naive:
            n = naive[g]
            line += f"  {n['ac1']:>8.3f}{n['ac3']:>8.3f}{n['avg5']:>8.3f}"
        print(line)
    print(f"{out['cases']} cases in {out['seconds']} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=300)
    ap.add_argument("--offline", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--nezha", type=Path, default=None, metavar="DIR",
                    help="score the RCA engine on real incidents (case folders with truth.json)")
    ap.add_argument("--naive", type=Path, default=None, metavar="SCRIPT",
                    help="with --nezha: also score this reference ranker (same CLI contract)")
    a = ap.parse_args()
    if a.nezha is not None:
        res = run_nezha(a.nezha, a.naive)
        print_nezha(res)
        if a.json:
            a.json.write_text(json.dumps(res, indent=2) + "\n")
        return 0
    out = {"seed": a.seed, "stream": run_stream(a.scenarios, a.seed),
           "stream_hard": run_stream(a.scenarios, a.seed, hard=True),
           "offline": run_offline(a.offline, a.seed) if a.offline else None}
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
