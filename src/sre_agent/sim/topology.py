"""The simulated trading platform's components and their dependency graph.

Services (``api-gateway``, ``order-service``, ``matching-engine``,
``wallet-service``, ``market-data``, ``risk-engine``, ``user-service``) call
each other and three shared dependencies (``postgres``, ``redis``,
``kafka``); pods run on three EKS nodes. Edges are ``(caller, callee)``,
the same shape as ``correlation.edges`` in the agent's settings.

Examples
--------
>>> topo = Topology.default()
>>> topo["api-gateway"].kind, topo["redis"].kind
('service', 'redis')
>>> ("order-service", "postgres") in topo.edges
True
>>> sorted(topo.callers("redis"))[:3]
['market-data', 'matching-engine', 'order-service']
>>> "api-gateway" in topo.upstream("postgres")
True
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["EDGE", "Component", "Node", "Topology"]

#: the edge service that receives external traffic
EDGE = "api-gateway"


@dataclass(frozen=True)
class Component:
    """One service or dependency and its normal operating point.

    ``rps`` is the request rate at the daily mean; ``capacity`` the rate one
    replica serves at 100% utilisation; latencies are the p50/p95/p99 at
    normal load, in seconds.
    """

    name: str
    kind: str = "service"  # service | postgres | redis | kafka
    replicas: int = 3
    rps: float = 100.0
    capacity: float = 100.0
    p50: float = 0.010
    p95: float = 0.030
    p99: float = 0.060
    error: float = 0.001
    cpu_per_replica: float = 0.25  # cores at normal load
    memory: float = 0.45  # working set / limit at rest
    #: (callee, calls per request, synchronous?) of its dependencies
    calls: tuple[tuple[str, float, bool], ...] = ()
    pool: bool = False  # has a PostgreSQL connection pool
    disk: float | None = None  # volume use ratio at rest, None without a volume
    consumes: str | None = None  # Kafka topic it consumes (consumer lag)
    consume_capacity: float = 0.0  # messages/s one replica processes
    nodes: tuple[str, ...] = ()  # nodes its pods run on, one per replica
    pod_hash: str = "5d8f7c9b4"

    def pods(self, replicas: int | None = None) -> list[str]:
        """Pod names, one per replica (``name-hash-suffix`` like a Deployment's)."""
        n = self.replicas if replicas is None else replicas
        return [f"{self.name}-{self.pod_hash}-{_suffix(self.name, i)}" for i in range(n)]


def _suffix(name: str, i: int) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    h = sum((k + 1) * ord(c) for k, c in enumerate(name)) + 7919 * i
    out = ""
    for _ in range(5):
        out += alphabet[h % len(alphabet)]
        h //= len(alphabet)
        h += 31 * (i + 1)
    return out


@dataclass(frozen=True)
class Node:
    """An EKS worker node (an EC2 instance)."""

    name: str
    instance_id: str
    memory: float = 0.55
    cpu: float = 0.35


@dataclass
class Topology:
    components: dict[str, Component]
    nodes: dict[str, Node] = field(default_factory=dict)
    _ref: dict[str, float] | None = field(default=None, repr=False, compare=False)

    def __getitem__(self, name: str) -> Component:
        return self.components[name]

    def __contains__(self, name: object) -> bool:
        return name in self.components

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components.values())

    @property
    def edges(self) -> list[tuple[str, str]]:
        """``(caller, callee)`` pairs (the agent's ``correlation.edges``)."""
        return sorted({(c.name, callee) for c in self for callee, _, _ in c.calls})

    def callees(self, name: str) -> list[str]:
        return sorted({callee for callee, _, _ in self[name].calls})

    def callers(self, name: str) -> list[str]:
        return sorted(c.name for c in self if any(callee == name for callee, _, _ in c.calls))

    def upstream(self, name: str) -> list[str]:
        """Every component that (transitively) calls ``name``."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            for caller in self.callers(todo.pop()):
                if caller not in seen:
                    seen.add(caller)
                    todo.append(caller)
        return sorted(seen)

    def order(self) -> list[str]:
        """Components with every callee before its callers (for propagation)."""
        done: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for callee in self.callees(n):
                visit(callee)
            done.append(n)

        for c in sorted(self.components):
            visit(c)
        return done

    def reference_utilisation(self) -> dict[str, float]:
        """Utilisation of each component at the daily-mean load with no fault."""
        if self._ref is None:
            rps = {c.name: 0.0 for c in self}
            rps[EDGE] = self[EDGE].rps
            ref: dict[str, float] = {}
            for name in reversed(self.order()):
                c = self[name]
                if c.consumes == "orders":
                    rps[name] = rps["order-service"]
                ref[name] = rps[name] / (c.capacity * c.replicas)
                for callee, calls, _ in c.calls:
                    rps[callee] += rps[name] * calls
            self._ref = ref
        return self._ref

    def on_node(self, node: str) -> list[str]:
        """Services with at least one pod on ``node``."""
        return sorted(c.name for c in self if node in c.nodes)

    @classmethod
    def default(cls) -> Topology:
        n1, n2, n3 = "ip-10-0-1-17", "ip-10-0-2-41", "ip-10-0-3-88"
        comps = [
            Component("api-gateway", replicas=4, rps=1200, capacity=2000, p50=0.012, p95=0.045,
                      p99=0.090, cpu_per_replica=0.6, memory=0.40,
                      calls=(("order-service", 0.25, True), ("market-data", 0.55, True),
                             ("wallet-service", 0.08, True), ("user-service", 0.12, True)),
                      nodes=(n1, n2, n3, n1), pod_hash="7c9d5f6b8"),
            Component("order-service", replicas=3, rps=300, capacity=400, p50=0.018, p95=0.060,
                      p99=0.120, cpu_per_replica=0.5, memory=0.50, pool=True,
                      calls=(("risk-engine", 1.0, True), ("postgres", 2.0, True),
                             ("redis", 1.0, True), ("kafka", 1.0, True)),
                      nodes=(n1, n3, n2), pod_hash="6f8b7d4c5"),
            Component("matching-engine", replicas=2, rps=300, capacity=1500, p50=0.002,
                      p95=0.006, p99=0.012, cpu_per_replica=0.8, memory=0.60,
                      calls=(("kafka", 2.0, False), ("redis", 0.5, True)),
                      consumes="orders", consume_capacity=400.0, nodes=(n3, n1), pod_hash="84c6d9f7b"),
            Component("wallet-service", replicas=3, rps=96, capacity=300, p50=0.015,
                      p95=0.050, p99=0.110, cpu_per_replica=0.3, memory=0.45, pool=True,
                      calls=(("postgres", 3.0, True), ("redis", 1.0, True)),
                      nodes=(n2, n3, n1), pod_hash="5b7f8c6d9"),
            Component("market-data", replicas=3, rps=660, capacity=5000, p50=0.004,
                      p95=0.015, p99=0.035, cpu_per_replica=0.45, memory=0.50,
                      calls=(("redis", 1.0, True), ("kafka", 0.2, False)),
                      disk=0.55, consumes="trades", consume_capacity=200.0, nodes=(n2, n2, n3), pod_hash="9d6c8b7f5"),
            Component("risk-engine", replicas=3, rps=300, capacity=450, p50=0.008, p95=0.025,
                      p99=0.050, cpu_per_replica=0.55, memory=0.50, pool=True,
                      calls=(("postgres", 1.0, True), ("redis", 2.0, True),
                             ("market-data", 0.5, True)),
                      consumes="positions", consume_capacity=200.0, nodes=(n1, n3, n2), pod_hash="6c5d8f9b7"),
            Component("user-service", replicas=3, rps=144, capacity=350, p50=0.010,
                      p95=0.035, p99=0.075, cpu_per_replica=0.25, memory=0.45, pool=True,
                      calls=(("postgres", 1.0, True), ("redis", 2.0, True)),
                      nodes=(n2, n1, n2), pod_hash="7b6f9d8c5"),
            Component("postgres", kind="postgres", replicas=1, rps=2000, capacity=6000,
                      p50=0.002, p95=0.006, p99=0.015, cpu_per_replica=2.0, memory=0.70,
                      disk=0.48, nodes=(n3,), pod_hash="0"),
            Component("redis", kind="redis", replicas=1, rps=2000, capacity=50000, p50=0.0004,
                      p95=0.001, p99=0.002, cpu_per_replica=0.4, memory=0.55, nodes=(n1,),
                      pod_hash="0"),
            Component("kafka", kind="kafka", replicas=3, rps=1300, capacity=20000, p50=0.003,
                      p95=0.008, p99=0.020, cpu_per_replica=0.6, memory=0.60, disk=0.40,
                      nodes=(n1, n2, n3), pod_hash="0"),
        ]
        nodes = [Node(n1, "i-0a1b2c3d4e5f60117"), Node(n2, "i-0b2c3d4e5f6a70241"),
                 Node(n3, "i-0c3d4e5f6a7b80388")]
        return cls({c.name: c for c in comps}, {n.name: n for n in nodes})

    def pod_names(self, name: str) -> list[str]:
        c = self[name]
        if c.kind != "service":  # StatefulSet pods
            return [f"{name}-{i}" for i in range(c.replicas)]
        return c.pods()
