"""A local stand-in for PagerDuty's Events API v2 and a WeCom group robot.

PagerDuty: ``POST /v2/enqueue`` with a JSON event — ``routing_key`` (32
characters in production; here the configured one), ``event_action`` one of
``trigger``/``acknowledge``/``resolve``, ``dedup_key`` (required for acknowledge
and resolve), and for a trigger a ``payload`` with ``summary``, ``source`` and
``severity`` (critical/error/warning/info). Answers ``202 {"status": "success",
"dedup_key": ...}`` or ``400 {"status": "invalid event", "errors": [...]}`` like
the service, and keeps alerts by dedup key: a second trigger with the same key
is deduplicated (PagerDuty's own idempotency), acknowledge/resolve change its
state.

WeCom: ``POST /cgi-bin/webhook/send?key=<robot key>`` with a ``markdown`` or
``text`` message; answers HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``, or
an ``errcode`` (93000 for a wrong key) as the robot does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import serve

__all__ = ["PagerDutyStandin", "WeComStandin"]

_SEVERITIES = {"critical", "error", "warning", "info"}


@dataclass
class PagerDutyStandin:
    routing_key: str = "R0UTINGKEY0000000000000000000000"
    events: list[dict[str, Any]] = field(default_factory=list)
    #: dedup key -> {"status": triggered|acknowledged|resolved, "summary", "triggers"}
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: answer 500 to the next N events (outage)
    fail_next: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v2/enqueue"

    async def _enqueue(self, request: web.Request) -> web.Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"status": "error", "message": "try again"}, status=500)
        try:
            ev = await request.json()
        except ValueError:
            return web.json_response({"status": "invalid event", "errors": ["bad JSON"]}, status=400)
        errors = []
        if ev.get("routing_key") != self.routing_key:
            errors.append("Invalid routing key")
        action = ev.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        key = ev.get("dedup_key")
        if action in ("acknowledge", "resolve") and not key:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        payload = ev.get("payload") or {}
        if action == "trigger":
            for need in ("summary", "source", "severity"):
                if not payload.get(need):
                    errors.append(f"'payload.{need}' is missing")
            if payload.get("severity") and payload["severity"] not in _SEVERITIES:
                errors.append("'payload.severity' is invalid")
        if errors:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                                      "errors": errors}, status=400)
        self.events.append(ev)
        key = key or f"generated-{len(self.events)}"
        alert = self.alerts.setdefault(key, {"status": "resolved", "summary": "", "triggers": 0})
        if action == "trigger":
            if alert["status"] != "triggered":
                alert["triggers"] += 1
            alert.update(status="triggered", summary=payload["summary"])
        elif alert["status"] != "resolved":
            alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": key}, status=202)

    def actions(self) -> list[tuple[str, str]]:
        return [(e["event_action"], e.get("dedup_key", "")) for e in self.events]

    async def start(self) -> PagerDutyStandin:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._runner, self.port = await serve(app, self.host, self.port or None)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class WeComStandin:
    key: str = "robot-key-1"
    messages: list[dict[str, Any]] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/cgi-bin/webhook/send?key={self.key}"

    async def _send(self, request: web.Request) -> web.Response:
        if request.query.get("key") != self.key:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"errcode": 40001, "errmsg": "invalid json"})
        kind = body.get("msgtype")
        if kind not in ("text", "markdown") or not (body.get(kind) or {}).get("content"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if len(body[kind]["content"].encode()) > 4096:
            return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
        self.messages.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def contents(self) -> list[str]:
        return [m[m["msgtype"]]["content"] for m in self.messages]

    async def start(self) -> WeComStandin:
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self._send)
        self._runner, self.port = await serve(app, self.host, self.port or None)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
