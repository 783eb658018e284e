"""How load, capacity and faults turn into each component's vital signs.

Two passes over the dependency graph: request rates flow from the edge to
callees (callers first); latency and errors flow back to callers (callees
first). Utilisation drives queueing delay (M/M/1-like), load shedding and CPU.

Examples
--------
>>> topo = Topology.default()
>>> calm = vitals(topo, traffic=1.0, effects={}, replicas={}, ready={})
>>> v = calm["api-gateway"]
>>> round(v.p99 / topo["api-gateway"].p99, 1), v.error < 0.01, v.up
(1.0, True, 1.0)
>>> hot = vitals(topo, 1.0, {"redis": Effect(down=True, ready=0.0)}, {}, {})
>>> hot["redis"].up, hot["market-data"].error > 0.1
(0.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .faults import Effect
from .topology import Topology

__all__ = ["DOWN_ERROR", "Vitals", "vitals"]

#: error share a caller suffers when a callee of this kind is down (fallbacks help)
DOWN_ERROR = {"redis": 0.3, "postgres": 0.9, "kafka": 0.5, "service": 0.9}
#: latency a caller waits on a hung callee of this kind (client timeouts)
DOWN_LATENCY = {"redis": 0.5, "postgres": 3.0, "kafka": 1.0, "service": 3.0}
_NO_EFFECT = Effect()


@dataclass
class Vitals:
    """One component's true state at one instant (before measurement noise)."""

    rps: float = 0.0
    served: float = 0.0
    utilisation: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    error: float = 0.0
    cpu_cores: float = 0.0
    throttled: float = 0.0
    memory: float = 0.0
    pool: float | None = None
    disk: float | None = None
    up: float = 1.0
    ready_replicas: float = 0.0
    #: callee -> share of this component's errors that come from it ("self" for its own)
    error_sources: dict[str, float] = field(default_factory=dict)
    slow_callee: str | None = None
    down_callee: str | None = None


def vitals(
    topo: Topology,
    traffic: float,
    effects: dict[str, Effect],
    replicas: dict[str, int],
    ready: dict[str, float],
    mix: dict[str, float] | None = None,
    entry_cap: float | None = None,
) -> dict[str, Vitals]:
    """Every component's vitals for one instant.

    Parameters
    ----------
    traffic
        Seasonal x burst multiplier of the edge's request rate.
    effects
        Direct fault effects per component.
    replicas, ready
        Current replica counts and extra readiness factors (restarts).
    mix
        Callee -> multiplier of the edge's calls per request (a surge's mix).
    entry_cap
        Rate limit at the edge, as a multiple of the usual rate (None: none).
    """
    order = topo.order()
    rps: dict[str, float] = {c.name: 0.0 for c in topo}
    out: dict[str, Vitals] = {c.name: Vitals() for c in topo}
    edge = "api-gateway"
    load = traffic * effects.get(edge, _NO_EFFECT).load
    if entry_cap is not None:
        load = min(load, entry_cap)
    rps[edge] = topo[edge].rps * load
    # pass 1: load, callers first
    for name in reversed(order):
        c = topo[name]
        if c.consumes == "orders":
            rps[name] = rps.get("order-service", 0.0)
        eff = effects.get(name, _NO_EFFECT)
        n = replicas.get(name, c.replicas) * eff.ready * ready.get(name, 1.0)
        cap = 0.0 if eff.down else c.capacity * eff.capacity * n
        u = rps[name] / cap if cap > 0 else float("inf") if rps[name] > 0 else 0.0
        served = rps[name] if u <= 1.0 else rps[name] / u
        v = out[name]
        v.rps, v.served, v.utilisation, v.ready_replicas = rps[name], served, u, n
        for callee, calls, _sync in c.calls:
            m = (mix or {}).get(callee, 1.0) if name == edge else 1.0
            rps[callee] += served * calls * m
    # pass 2: latency and errors, callees first
    for name in order:
        _health(topo, name, out, effects.get(name, _NO_EFFECT), replicas, traffic)
    return out


def _health(topo: Topology, name: str, out: dict[str, Vitals], eff: Effect,
            replicas: dict[str, int], traffic: float) -> None:
    c = topo[name]
    v = out[name]
    u_ref = topo.reference_utilisation()[name]
    u = v.utilisation
    if eff.down:
        v.up, v.p50, v.p95, v.p99, v.error = 0.0, 0.0, 0.0, 0.0, 1.0
        v.error_sources = {"self": 1.0}
        v.cpu_cores, v.memory = 0.0, 0.0
        return
    qf = (1.0 - u_ref) / (1.0 - min(u, 0.97)) if u >= 0 else 1.0
    qf = max(qf, 0.6)
    shed = max(0.0, 1.0 - 1.0 / u) if u > 1.0 else 0.0
    dep50 = dep99 = 0.0
    sources: dict[str, float] = {}
    worst_slow = (0.0, None)
    for callee, calls, sync in c.calls:
        cv, cc = out[callee], topo[callee]
        w = min(calls, 1.5) * (0.9 if sync else 0.1)
        if cv.up == 0.0:
            dep99 += DOWN_LATENCY[cc.kind] * min(calls, 1.0) * (1.0 if sync else 0.2)
            dep50 += 0.3 * DOWN_LATENCY[cc.kind] * min(calls, 1.0) * (1.0 if sync else 0.2)
            sources[callee] = DOWN_ERROR[cc.kind] * (1.0 if sync else 0.3)
            v.down_callee = callee
            continue
        x99 = max(0.0, cv.p99 - cc.p99 * 1.5)
        x50 = max(0.0, cv.p50 - cc.p50 * 1.5)
        dep99 += w * x99
        dep50 += w * x50
        if w * x99 > worst_slow[0]:
            worst_slow = (w * x99, callee)
        if cv.error > 0.01:
            sources[callee] = min(1.0, calls) * 0.8 * cv.error * (1.0 if sync else 0.2)
    if worst_slow[0] > c.p99:
        v.slow_callee = worst_slow[1]
    own = c.error + shed + eff.error
    sources["self"] = own
    v.error = min(1.0, sum(sources.values()))
    v.error_sources = sources
    v.p50 = c.p50 * qf ** 0.5 + dep50 + 0.5 * eff.latency
    v.p95 = c.p95 * qf ** 0.8 + 0.5 * (dep50 + dep99) + 0.8 * eff.latency
    v.p99 = c.p99 * qf + dep99 + eff.latency
    if shed > 0:  # overloaded: requests wait up to the timeout
        v.p99 = max(v.p99, min(5.0, c.p99 * 10 * (1 + shed)))
    n = max(v.ready_replicas, 0.0)
    demand = c.cpu_per_replica * (0.35 + 0.65 * min(u, 3.0) / max(u_ref, 1e-6)) + eff.cpu
    limit = 2.5 * c.cpu_per_replica
    v.throttled = max(0.0, (demand - limit) / demand) if demand > 0 else 0.0
    v.cpu_cores = n * min(demand, limit)
    v.memory = min(1.0, c.memory + 0.03 * (traffic - 1.0) + eff.memory)
    if c.pool:
        v.pool = min(1.0, 0.3 * (v.served / max(u_ref * c.capacity * c.replicas, 1e-6)) ** 0.5
                     + eff.pool)
    if c.disk is not None:
        v.disk = min(1.0, c.disk + eff.disk)
    total = replicas.get(name, c.replicas)
    v.up = min(1.0, n / total) if total else 0.0
