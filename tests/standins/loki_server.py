"""A local stand-in for Grafana Loki's HTTP API: push and ``query_range`` for log streams.

No Loki server can run on this machine (Loki ships as a Go binary or a
container image, neither reachable from the package registries available
here), so the Loki collector is tested against this stand-in, which speaks
Loki's wire protocol with the real client code (aiohttp) on a local port:

* ``POST /loki/api/v1/push`` with Loki's JSON push body
  ``{"streams": [{"stream": {labels}, "values": [["<ns>", "line"], ...]}]}``;
* ``GET /loki/api/v1/query_range`` with ``query``, ``start``/``end`` (Unix ns,
  ``start`` inclusive, ``end`` exclusive), ``limit`` and ``direction``, answering
  ``{"status": "success", "data": {"resultType": "streams", "result": [...],
  "stats": {}}}`` exactly as Loki does (limit applies to the total number of
  lines across streams; entries inside a stream follow ``direction``);
* errors as Loki gives them: HTTP 400 with a plain-text message for a bad
  query or parameter.

The LogQL subset understood: a stream selector with ``=``, ``!=``, ``=~`` and
``!~`` matchers, followed by any number of line filters ``|=``, ``!=``, ``|~``
and ``!~``. That is what the collector's error-line queries use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from . import serve

__all__ = ["LokiStandin", "parse_logql"]

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
_FILTER = re.compile(r'\s*(\|=|!=|\|~|!~)\s*"((?:[^"\\]|\\.)*)"')


def _unquote(s: str) -> str:
    return s.encode().decode("unicode_escape")


def parse_logql(query: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """``(matchers, line filters)`` of a ``{selector} |= "x" |~ "y"`` query; ValueError if not."""
    q = query.strip()
    if not q.startswith("{") or "}" not in q:
        raise ValueError(f"parse error : queries require at least one stream selector: {query!r}")
    sel, rest = q[1:].split("}", 1)
    matchers: list[tuple[str, str, str]] = []
    pos = 0
    while pos < len(sel):
        m = _MATCHER.match(sel, pos)
        if not m:
            raise ValueError(f"parse error at {pos}: bad matcher in {{{sel}}}")
        matchers.append((m.group(1), m.group(2), _unquote(m.group(3))))
        pos = m.end()
    if not matchers:
        raise ValueError("parse error : queries require at least one stream selector")
    filters: list[tuple[str, str]] = []
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _FILTER.match(rest, pos)
        if not m:
            raise ValueError(f"parse error : unsupported pipeline stage near {rest[pos:]!r}")
        filters.append((m.group(1), _unquote(m.group(2))))
        pos = m.end()
    return matchers, filters


def _selects(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, val in matchers:
        have = labels.get(name, "")
        if op == "=" and have != val or op == "!=" and have == val:
            return False
        if op == "=~" and not re.fullmatch(val, have) or op == "!~" and re.fullmatch(val, have):
            return False
    return True


def _keeps(line: str, filters: list[tuple[str, str]]) -> bool:
    for op, val in filters:
        if (op == "|=" and val not in line or op == "!=" and val in line
                or op == "|~" and not re.search(val, line) or op == "!~" and re.search(val, line)):
            return False
    return True


@dataclass
class LokiStandin:
    """Run with ``await standin.start()``; ``standin.url`` is the base URL."""

    host: str = "127.0.0.1"
    streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_next: int = 0
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def push(self, labels: dict[str, str], entries: list[tuple[int, str]]) -> None:
        key = tuple(sorted(labels.items()))
        self.streams.setdefault(key, []).extend(entries)
        self.streams[key].sort(key=lambda e: e[0])

    async def _push(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            for s in body["streams"]:
                self.push(dict(s["stream"]), [(int(ts), str(line)) for ts, line, *_ in s["values"]])
        except (ValueError, KeyError, TypeError) as exc:
            return web.Response(status=400, text=f"error parsing push request: {exc}")
        return web.Response(status=204)

    async def _query_range(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append(dict(q))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="rpc error: code = Unavailable desc = ingester down")
        try:
            matchers, filters = parse_logql(q.get("query", ""))
            start = int(q.get("start", "0"))
            end = int(q["end"]) if "end" in q else 2**63 - 1
            limit = int(q.get("limit", "100"))
            direction = q.get("direction", "backward")
            if direction not in ("forward", "backward"):
                raise ValueError(f"invalid direction {direction!r}")
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        hits: list[tuple[int, tuple[tuple[str, str], ...], str]] = []
        for key, entries in self.streams.items():
            if not _selects(dict(key), matchers):
                continue
            hits.extend((ts, key, line) for ts, line in entries
                        if start <= ts < end and _keeps(line, filters))
        hits.sort(key=lambda h: h[0], reverse=direction == "backward")
        hits = hits[:limit]
        grouped: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for ts, key, line in hits:
            grouped.setdefault(key, []).append([str(ts), line])
        result: list[dict[str, Any]] = [{"stream": dict(k), "values": v} for k, v in grouped.items()]
        body = {"status": "success",
                "data": {"resultType": "streams", "result": result,
                         "stats": {"summary": {"totalLinesProcessed": len(hits)}}}}
        return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())

    async def start(self) -> LokiStandin:
        app = web.Application()
        app.router.add_post("/loki/api/v1/push", self._push)
        app.router.add_get("/loki/api/v1/query_range", self._query_range)
        app.router.add_get("/ready", lambda r: web.Response(text="ready"))
        self._runner, self.port = await serve(app, self.host, self.port, access_log=None)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
