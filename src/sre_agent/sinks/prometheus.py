"""Prometheus-compatible HTTP API client (Prometheus, Mimir, Thanos, VictoriaMetrics).

Only the two read endpoints the agent needs: ``/api/v1/query`` (instant) and
``/api/v1/query_range``. Results come back as :class:`MetricSeries` dicts
(``{"name", "labels", "points"}``), the same shape the ``metrics`` topic
carries, so a history fetch can feed the exact stream code.

The aiohttp session is injected (created by the lifecycle owner); this class
never opens or closes it.

Examples
--------
>>> body = {"status": "success", "data": {"resultType": "matrix", "result": [
...     {"metric": {"__name__": "up", "job": "api"}, "values": [[1.7e9, "1"], [1.7e9 + 15, "NaN"]]}]}}
>>> parse_response(body)
[{'name': 'up', 'labels': {'job': 'api'}, 'points': [(1700000000.0, 1.0)]}]
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

import aiohttp

from ..schemas import MetricSeries

__all__ = ["PrometheusClient", "PrometheusError", "parse_response"]

log = logging.getLogger(__name__)

#: Prometheus refuses range queries above 11,000 points per series
MAX_POINTS = 11_000


class PrometheusError(RuntimeError):
    """The API answered with an error, or could not be reached."""


def _ts(t: float | datetime | None) -> str | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return f"{t.timestamp():.3f}"
    return f"{float(t):.3f}"


def _series(metric: dict[str, str], values: list[list[Any]], fallback: str) -> MetricSeries | None:
    labels = dict(metric)
    name = labels.pop("__name__", None) or fallback
    points: list[tuple[float, float]] = []
    for t, raw in values:
        try:
            v = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            points.append((float(t), v))
    if not points:
        return None
    return {"name": name, "labels": labels, "points": points}


def parse_response(body: dict[str, Any], fallback_name: str = "value") -> list[MetricSeries]:
    """Turn a Prometheus API JSON body into ``MetricSeries``; raise on errors.

    NaN/Inf samples and series without points are dropped. Series without a
    ``__name__`` (e.g. ``rate(...)`` results) get ``fallback_name``.
    """
    if not isinstance(body, dict) or body.get("status") != "success":
        err = body.get("error", "unknown error") if isinstance(body, dict) else "not a JSON object"
        etype = body.get("errorType", "") if isinstance(body, dict) else ""
        raise PrometheusError(f"prometheus error{f' ({etype})' if etype else ''}: {err}")
    data = body.get("data") or {}
    rtype, result = data.get("resultType"), data.get("result") or []
    out: list[MetricSeries] = []
    if rtype == "matrix":
        for r in result:
            s = _series(r.get("metric", {}), r.get("values", []), fallback_name)
            if s:
                out.append(s)
    elif rtype == "vector":
        for r in result:
            s = _series(r.get("metric", {}), [r["value"]] if "value" in r else [], fallback_name)
            if s:
                out.append(s)
    elif rtype == "scalar":
        s = _series({}, [result] if result else [], fallback_name)
        if s:
            out.append(s)
    else:
        raise PrometheusError(f"unsupported resultType {rtype!r}")
    return out


class PrometheusClient:
    """Read client of a Prometheus-compatible HTTP API.

    Parameters
    ----------
    base_url
        e.g. ``http://prometheus:9090`` or ``http://mimir/prometheus``.
    session
        An open :class:`aiohttp.ClientSession` (owned by the caller).
    timeout
        Seconds per request.
    headers
        Extra headers (``X-Scope-OrgID`` for Mimir, ``Authorization``...).
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.headers = dict(headers or {})

    async def _get(self, path: str, params: dict[str, str], fallback: str) -> list[MetricSeries]:
        url = f"{self.base_url}{path}"
        try:
            async with self.session.get(url, params=params, timeout=self.timeout,
                                         headers=self.headers) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    text = (await resp.text())[:300]
                    raise PrometheusError(f"{url}: HTTP {resp.status}: not JSON: {text!r}") from None
                if resp.status >= 400 and not (isinstance(body, dict) and "error" in body):
                    raise PrometheusError(f"{url}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PrometheusError(f"{url}: {type(exc).__name__}: {exc}") from exc
        return parse_response(body, fallback)

    async def query(self, promql: str, time: float | datetime | None = None) -> list[MetricSeries]:
        """Instant query; each series has one point."""
        params = {"query": promql}
        ts = _ts(time)
        if ts is not None:
            params["time"] = ts
        return await self._get("/api/v1/query", params, promql)

    async def query_range(
        self, promql: str, start: float | datetime, end: float | datetime, step: float,
    ) -> list[MetricSeries]:
        """Range query. Spans longer than Prometheus's 11,000-point limit are split."""
        t0 = float(_ts(start) or 0)
        t1 = float(_ts(end) or 0)
        if step <= 0:
            raise ValueError("step must be > 0")
        if t1 < t0:
            raise ValueError("end must not be before start")
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], MetricSeries] = {}
        chunk = step * (MAX_POINTS - 1)
        a = t0
        while a <= t1:
            b = min(t1, a + chunk)
            params = {"query": promql, "start": f"{a:.3f}", "end": f"{b:.3f}", "step": f"{step:g}"}
            for s in await self._get("/api/v1/query_range", params, promql):
                k = (s["name"], tuple(sorted(s["labels"].items())))
                if k in merged:
                    last = merged[k]["points"][-1][0]
                    merged[k]["points"].extend(p for p in s["points"] if p[0] > last)
                else:
                    merged[k] = s
            a = b + step
        return list(merged.values())
