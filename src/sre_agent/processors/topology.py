"""Service dependency graph: who calls whom, components, hop distances.

Edges are ``(caller, callee)``: a problem in a callee (a database) shows up as
symptoms in its callers (the API). The correlator routes every signal of one
connected component to one Kafka key (:meth:`ServiceGraph.group_of`) so that
ordering holds for everything that may end up in one incident.

Examples
--------
>>> g = ServiceGraph([("web", "api"), ("api", "db"), ("batch", "queue")])
>>> g.group_of("db"), g.group_of("web"), g.group_of("queue"), g.group_of("lonely")
('api', 'api', 'batch', 'lonely')
>>> g.callees("api"), g.callers("api")
(['db'], ['web'])
>>> g.distance("web", "db"), g.distance("web", "queue") is None
(2, True)
>>> g.downstream("web")
['api', 'db']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["ServiceGraph"]


class ServiceGraph:
    """An immutable directed graph of services with undirected reachability helpers.

    Parameters
    ----------
    edges
        ``(caller, callee)`` pairs; self-loops and duplicates are ignored.
    """

    def __init__(self, edges: Iterable[tuple[str, str]] = ()) -> None:
        self._out: dict[str, set[str]] = {}
        self._in: dict[str, set[str]] = {}
        for caller, callee in edges:
            if not caller or not callee or caller == callee:
                continue
            self._out.setdefault(caller, set()).add(callee)
            self._in.setdefault(callee, set()).add(caller)
            self._out.setdefault(callee, set())
            self._in.setdefault(caller, set())
        self._group: dict[str, str] = {}
        for node in sorted(self._out):
            if node in self._group:
                continue
            comp = self._component(node)
            name = min(comp)
            for n in comp:
                self._group[n] = name

    @property
    def services(self) -> list[str]:
        return sorted(self._out)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return sorted((a, b) for a, bs in self._out.items() for b in bs)

    def __contains__(self, service: object) -> bool:
        return service in self._out

    def callees(self, service: str) -> list[str]:
        """Services ``service`` calls (its dependencies)."""
        return sorted(self._out.get(service, ()))

    def callers(self, service: str) -> list[str]:
        """Services that call ``service`` (its dependants)."""
        return sorted(self._in.get(service, ()))

    def neighbours(self, service: str) -> set[str]:
        return self._out.get(service, set()) | self._in.get(service, set())

    def _component(self, start: str) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            for n in self.neighbours(todo.pop()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    def group_of(self, service: str) -> str:
        """Stable routing key: the smallest service name of its connected component."""
        return self._group.get(service, service)

    def distance(self, a: str, b: str, limit: int = 64) -> int | None:
        """Undirected hop count between two services, None if unconnected."""
        if a == b:
            return 0
        seen = {a}
        frontier = deque([(a, 0)])
        while frontier:
            node, d = frontier.popleft()
            if d >= limit:
                break
            for n in self.neighbours(node):
                if n == b:
                    return d + 1
                if n not in seen:
                    seen.add(n)
                    frontier.append((n, d + 1))
        return None

    def downstream(self, service: str) -> list[str]:
        """Every service reachable by following calls from ``service`` (excluding it)."""
        seen: set[str] = set()
        todo = [service]
        while todo:
            for n in self._out.get(todo.pop(), ()):
                if n not in seen and n != service:
                    seen.add(n)
                    todo.append(n)
        return sorted(seen)

    def upstream(self, service: str) -> list[str]:
        """Every service that (transitively) calls ``service``."""
        seen: set[str] = set()
        todo = [service]
        while todo:
            for n in self._in.get(todo.pop(), ()):
                if n not in seen and n != service:
                    seen.add(n)
                    todo.append(n)
        return sorted(seen)
