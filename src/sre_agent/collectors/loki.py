"""Loki collector: LogQL ``query_range`` for error lines per service -> ``LogRecord``.

Each LogQL query (e.g. ``{namespace="prod"} |~ "(?i)error"``) is one job. A
poll reads ``[cursor, now - delay)`` in ``direction=forward`` pages of
``limit`` lines; a full page continues from its last timestamp, skipping the
lines already seen at exactly that nanosecond. Each line becomes a
:class:`~sre_agent.schemas.LogRecord` whose service is the first stream label
found among ``service_labels`` and whose level is the stream's ``level`` /
``detected_level`` label or the query's default.

Examples
--------
>>> body = {"status": "success", "data": {"resultType": "streams", "result": [
...     {"stream": {"app": "order-service", "level": "error"},
...      "values": [["1700000000000000000", "db timeout"]]}]}}
>>> entries = parse_streams(body)
>>> entries
[(1700000000000000000, {'app': 'order-service', 'level': 'error'}, 'db timeout')]
>>> q = LokiQuerySettings(name="errors", expr='{app=~".+"} |= "error"')
>>> rec = to_record(entries[0], q)
>>> rec.service, rec.level, rec.message, rec.time.isoformat()
('order-service', 'error', 'db timeout', '2023-11-14T22:13:20+00:00')
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from ..config import LokiQuerySettings
from ..schemas import LogRecord
from .runner import Collected

__all__ = ["LokiClient", "LokiError", "LokiQueryJob", "parse_streams", "to_record"]

log = logging.getLogger(__name__)

Entry = tuple[int, dict[str, str], str]
_MAX_MESSAGE = 16384


class LokiError(RuntimeError):
    """Loki answered with an error or could not be reached."""


def parse_streams(body: Any) -> list[Entry]:
    """``(ns, stream labels, line)`` of a ``query_range`` streams answer, oldest first."""
    if not isinstance(body, dict) or body.get("status") != "success":
        err = body.get("error") or body.get("message") if isinstance(body, dict) else None
        raise LokiError(f"loki error: {err or 'unexpected answer'}")
    data = body.get("data") or {}
    if data.get("resultType") != "streams":
        raise LokiError(f"loki: expected a log query (resultType streams), got "
                        f"{data.get('resultType')!r}; metric queries are for the Prometheus collector")
    out: list[Entry] = []
    for stream in data.get("result") or []:
        labels = {str(k): str(v) for k, v in (stream.get("stream") or {}).items()}
        for ts, line, *meta in stream.get("values") or []:
            extra = _line_metadata(meta[0]) if meta else {}
            out.append((int(ts), {**labels, **extra} if extra else labels, str(line)))
    out.sort(key=lambda e: e[0])
    return out


def _line_metadata(meta: Any) -> dict[str, str]:
    """A line's own labels: Loki 3's third value element, either categorised
    (``{"structured_metadata": {...}, "parsed": {...}}``, with the
    ``X-Loki-Response-Encoding-Flags: categorize-labels`` header) or flat. OpenTelemetry
    logs carry their ``trace_id`` there, not in the line; the stream RCA's hand-offs
    need it (``streams/rca_windows.py``)."""
    if not isinstance(meta, dict):
        return {}
    if "structured_metadata" in meta or "parsed" in meta:
        parts = [meta.get("structured_metadata"), meta.get("parsed")]
    else:
        parts = [meta]
    return {str(k): str(v) for part in parts if isinstance(part, dict)
            for k, v in part.items() if isinstance(v, str | int | float)}


def to_record(entry: Entry, query: LokiQuerySettings) -> LogRecord:
    """One Loki line as a ``LogRecord``."""
    ns, labels, line = entry
    service = next((labels[k] for k in query.service_labels if labels.get(k)), "unknown")
    level = labels.get("level") or labels.get("detected_level") or labels.get("severity") or query.level
    return LogRecord(
        time=datetime.fromtimestamp(ns / 1e9, UTC),
        service=service[:256],
        level=level.lower(),
        message=line[:_MAX_MESSAGE],
        labels={**labels, "loki_query": query.name},
    )


class LokiClient:
    """``GET /loki/api/v1/query_range`` over an injected aiohttp session."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.headers = dict(headers or {})

    async def query_range(self, logql: str, start_ns: int, end_ns: int, limit: int) -> list[Entry]:
        url = f"{self.base_url}/loki/api/v1/query_range"
        params = {"query": logql, "start": str(start_ns), "end": str(end_ns),
                  "limit": str(limit), "direction": "forward"}
        try:
            async with self.session.get(url, params=params, timeout=self.timeout,
                                         headers=self.headers) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise LokiError(f"{url}: HTTP {resp.status}: {text[:300]}")
                try:
                    body = orjson.loads(text)
                except ValueError:
                    raise LokiError(f"{url}: not JSON: {text[:200]!r}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LokiError(f"{url}: {type(exc).__name__}: {exc}") from exc
        return parse_streams(body)


class LokiQueryJob:
    """Poll one LogQL query, page by page, from the committed cursor (ns)."""

    def __init__(self, client: LokiClient, query: LokiQuerySettings, default_interval: float,
                 limit: int = 1000, max_pages: int = 10, max_catchup: float = 3600.0,
                 delay: float = 5.0) -> None:
        self.client = client
        self.query = query
        self.name = query.name
        self.interval = query.interval or default_interval
        self.limit = limit
        self.max_pages = max_pages
        self.max_catchup = max_catchup
        self.delay = delay
        #: next start (ns, inclusive) and lines already read at that nanosecond
        self.cursor: tuple[int, frozenset[tuple[str, str]]] | None = None

    async def collect(self, now: float) -> Collected:
        end = int(math.floor((now - self.delay) * 1e9))
        oldest = int((now - self.max_catchup) * 1e9)
        if self.cursor is None:
            start, seen = int((now - self.delay - self.interval) * 1e9), frozenset()
        else:
            start, seen = self.cursor
        start = max(start, oldest)
        if start >= end:
            return Collected(cursor=self.cursor)
        records: list[LogRecord] = []
        for _page in range(self.max_pages):
            entries = await self.client.query_range(self.query.expr, start, end, self.limit)
            fresh = [e for e in entries
                     if not (e[0] == start and (repr(sorted(e[1].items())), e[2]) in seen)]
            records.extend(to_record(e, self.query) for e in fresh)
            if len(entries) < self.limit or not entries:
                return Collected(events=records, cursor=(end, frozenset()))
            last = entries[-1][0]
            at_last = {(repr(sorted(e[1].items())), e[2]) for e in entries if e[0] == last}
            seen = frozenset(at_last | (seen if last == start else set()))
            start = last
        log.warning("loki query %s: more than %d pages of %d lines; continuing next poll",
                    self.name, self.max_pages, self.limit)
        return Collected(events=records, cursor=(start, seen))

    def commit(self, cursor: Any) -> None:
        self.cursor = cursor
