"""The series the platform exports, named like the agent's Prometheus collector.

Services: ``http_requests_per_second``, ``http_latency_p{50,95,99}_seconds``,
``http_error_ratio``, ``cpu_usage_cores``, ``cpu_throttled_ratio``,
``memory_limit_ratio``, ``up_ratio`` and, where they apply,
``db_pool_usage_ratio``, ``disk_used_ratio``, ``kafka_consumer_lag``.
PostgreSQL, Redis and Kafka export their own (``pg_*``, ``redis_*``,
``kafka_*``); nodes export ``node_*`` with a ``node`` label. Saturation
series are ratios whose limit is 1.0.

Examples
--------
>>> import random
>>> from .physics import vitals
>>> topo = Topology.default()
>>> cat = SeriesCatalog(topo, random.Random(1))
>>> v = vitals(topo, 1.0, {}, {}, {})
>>> samples = cat.sample(1_700_000_000.0, v, {}, {})
>>> names = {n for n, _, _ in samples}
>>> {"http_latency_p99_seconds", "db_pool_usage_ratio", "node_memory_used_ratio"} <= names
True
"""

from __future__ import annotations

import math
import random

from .faults import Effect
from .physics import Vitals
from .topology import Topology
from .traffic import Ar1

__all__ = ["SeriesCatalog", "labels_of"]

Sample = tuple[str, dict[str, str], float]


def labels_of(topo: Topology, name: str) -> dict[str, str]:
    ns = "trading" if topo[name].kind == "service" else "data"
    return {"namespace": ns, "service": name}


class SeriesCatalog:
    """Measures vitals into samples with per-series noise (seeded, time-ordered)."""

    def __init__(self, topo: Topology, rng: random.Random) -> None:
        self.topo = topo
        self.rng = rng
        self._noise: dict[tuple[str, str], Ar1] = {}
        self._labels: dict[tuple[str, str], dict[str, str]] = {}

    def _n(self, metric: str, owner: str, sigma: float) -> float:
        key = (metric, owner)
        ar = self._noise.get(key)
        if ar is None:
            ar = self._noise[key] = Ar1(random.Random(f"{self.rng.random()}"), sigma)
        return ar.step()

    def _lab(self, metric: str, owner: str, base: dict[str, str]) -> dict[str, str]:
        key = (metric, owner)
        lab = self._labels.get(key)
        if lab is None:
            lab = self._labels[key] = base
        return lab

    def _put(self, out: list[Sample], metric: str, owner: str, base: dict[str, str],
             value: float, sigma: float, mult: bool = True, hi: float | None = None,
             extra: dict[str, str] | None = None) -> None:
        x = self._n(metric, owner, sigma) if sigma else 0.0
        val = value * math.exp(x) if mult else value + x
        val = max(0.0, val if hi is None else min(hi, val))
        out.append((metric, self._lab(metric, owner, {**base, **(extra or {})}), val))

    def sample(self, t: float, vit: dict[str, Vitals], node_eff: dict[str, Effect],
               lag: dict[str, float]) -> list[Sample]:
        out: list[Sample] = []
        for c in self.topo:
            v = vit[c.name]
            base = labels_of(self.topo, c.name)
            if c.kind != "service":
                self._datastore(out, c.name, base, v, t)
                continue
            put = self._put
            put(out, "http_requests_per_second", c.name, base, v.rps, 0.04)
            put(out, "http_latency_p50_seconds", c.name, base, v.p50, 0.05)
            put(out, "http_latency_p95_seconds", c.name, base, v.p95, 0.07)
            put(out, "http_latency_p99_seconds", c.name, base, v.p99, 0.10)
            put(out, "http_error_ratio", c.name, base, v.error, 0.25, hi=1.0)
            put(out, "cpu_usage_cores", c.name, base, v.cpu_cores, 0.04)
            put(out, "cpu_throttled_ratio", c.name, base, v.throttled + 0.01, 0.2, hi=1.0)
            put(out, "memory_limit_ratio", c.name, base, v.memory, 0.004, mult=False, hi=1.0)
            put(out, "up_ratio", c.name, base, v.up, 0.0, mult=False, hi=1.0)
            if v.pool is not None:
                put(out, "db_pool_usage_ratio", c.name, base, v.pool, 0.05, hi=1.0,
                    extra={"pool": "postgres"})
            if v.disk is not None:
                grow = 0.0025 * ((t % 86400.0) / 3600.0)  # tick cache, compacted at midnight
                put(out, "disk_used_ratio", c.name, base, v.disk + grow, 0.0008, mult=False,
                    hi=1.0, extra={"mountpoint": "/data"})
            if c.consumes:
                put(out, "kafka_consumer_lag", c.name, base, 60.0 + lag.get(c.name, 0.0), 0.3,
                    extra={"topic": c.consumes, "group": c.name})
        for node in self.topo.nodes.values():
            eff = node_eff.get(node.name, Effect())
            lab = {"instance": node.instance_id, "job": "node-exporter", "node": node.name}
            self._put(out, "node_memory_used_ratio", node.name, lab, node.memory + eff.memory,
                      0.006, mult=False, hi=1.0)
            self._put(out, "node_cpu_used_ratio", node.name, lab, node.cpu, 0.02, mult=False,
                      hi=1.0)
        return out

    def _datastore(self, out: list[Sample], name: str, base: dict[str, str], v: Vitals,
                   t: float) -> None:
        kind = self.topo[name].kind
        put = self._put
        if v.up == 0.0:  # the exporter cannot reach it: only ``up`` is scraped
            put(out, "up_ratio", name, base, 0.0, 0.0, mult=False)
            return
        rate, latency = {
            "postgres": ("pg_queries_per_second", "pg_query_latency_p99_seconds"),
            "redis": ("redis_commands_per_second", "redis_latency_p99_seconds"),
            "kafka": ("kafka_messages_in_per_second", "kafka_produce_latency_p99_seconds"),
        }[kind]
        put(out, rate, name, base, v.rps, 0.04)
        put(out, latency, name, base, v.p99, 0.08)
        put(out, "cpu_usage_cores", name, base, v.cpu_cores, 0.04)
        put(out, "memory_limit_ratio", name, base, v.memory, 0.004, mult=False, hi=1.0)
        put(out, "up_ratio", name, base, 1.0, 0.0, mult=False)
        if v.disk is not None:
            put(out, "disk_used_ratio", name, base, v.disk, 0.0008, mult=False, hi=1.0,
                extra={"mountpoint": "/var/lib/" + kind})
        if kind == "redis":
            put(out, "redis_connected_clients", name, base, 180.0, 0.03)
