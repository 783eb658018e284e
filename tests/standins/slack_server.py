"""A local stand-in for Slack's Web API, driven by the real slack-sdk client.

slack-sdk ships no test server, so this speaks the wire protocol the client
uses: ``POST /api/<method>`` with ``Authorization: Bearer <token>`` and a JSON
(or form) body, answered with ``{"ok": true, ...}`` or ``{"ok": false,
"error": ...}`` and HTTP 200, like Slack. Implemented methods:

* ``auth.test`` — who the token belongs to;
* ``chat.postMessage`` — needs ``channel`` and ``text`` or ``blocks``; answers
  ``channel`` (an id) and a fresh ``ts``;
* ``chat.update`` — needs ``channel``, ``ts`` of a posted message, and content;
* ``conversations.history`` (GET, query string) — the channel's messages newest
  first, ``oldest`` honoured, message ``metadata`` only with ``include_all_metadata``,
  ``limit``/``cursor`` pagination with ``has_more`` and ``response_metadata``; thread
  replies are left out unless posted with ``reply_broadcast``, as Slack does;
* ``conversations.replies`` (GET) — the parent ``ts`` and its thread's replies, oldest
  first, with the same metadata and pagination rules.

``chat.postMessage`` with ``thread_ts`` replies in that thread; every message keeps
the channel it was sent to (``requested_channel``) for the tests.

Unknown methods answer ``unknown_method``, a wrong token ``invalid_auth``.
Every call is kept in ``standin.calls`` as ``(method, body)``; posted messages
in ``standin.messages`` by ts. :func:`signed_interaction` builds what Slack
sends to an app's interactivity URL when a button is pressed (form-encoded
``payload``, signed with the signing secret).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from . import serve

__all__ = ["SlackStandin", "signed_interaction"]


def _ok(**kw: Any) -> web.Response:
    return web.json_response({"ok": True, **kw})


def _err(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


@dataclass
class SlackStandin:
    """Run with ``await standin.start()``; ``standin.base_url`` is the client's base_url."""

    token: str = "xoxb-test-token"
    channel_id: str = "C0APPROVALS"
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None
    _ts: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        raw = await request.read()
        if request.content_type == "application/json":
            return orjson.loads(raw) if raw else {}
        form = parse_qs(raw.decode())
        out: dict[str, Any] = {k: v[0] for k, v in form.items()}
        for key in ("blocks", "attachments"):
            if isinstance(out.get(key), str):
                out[key] = orjson.loads(out[key])
        return out

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _err("invalid_auth" if request.headers.get("Authorization") else "not_authed")
        try:
            body = await self._body(request)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return _err("invalid_json")
        self.calls.append((method, body))
        if method == "auth.test":
            return _ok(url="https://standin.slack.com/", team="standin", user="sre-agent",
                       team_id="T0", user_id="U0BOT", bot_id="B0")
        if method in ("chat.postMessage", "chat.update"):
            if not body.get("channel"):
                return _err("channel_not_found")
            if not body.get("text") and not body.get("blocks"):
                return _err("no_text")
            if method == "chat.update":
                ts = body.get("ts")
                if ts not in self.messages:
                    return _err("message_not_found")
            else:
                ts = f"{int(time.time())}.{next(self._ts):06d}"
            msg = {"channel": self.channel_id, "ts": ts, "text": body.get("text", ""),
                   "blocks": body.get("blocks", [])}
            old = self.messages.get(ts, {})
            for key in ("thread_ts", "reply_broadcast", "requested_channel"):
                if key in old:
                    msg[key] = old[key]
            if method == "chat.postMessage":
                msg["requested_channel"] = body["channel"]
                if body.get("thread_ts"):
                    if body["thread_ts"] not in self.messages:
                        return _err("thread_not_found")
                    msg["thread_ts"] = body["thread_ts"]
                    msg["reply_broadcast"] = str(body.get("reply_broadcast", "")).lower() in (
                        "1", "true")
            meta = body.get("metadata") if method == "chat.postMessage" else \
                self.messages[ts].get("metadata")
            if isinstance(meta, str):
                meta = orjson.loads(meta)
            if meta:
                msg["metadata"] = meta
            self.messages[ts] = msg
            return _ok(channel=self.channel_id, ts=ts, message=msg)
        if method == "conversations.history":
            return self._history(body)
        if method == "conversations.replies":
            return self._replies(body)
        return _err("unknown_method")

    def _page(self, msgs: list[dict[str, Any]], q: dict[str, Any]) -> web.Response:
        with_meta = str(q.get("include_all_metadata", "")).lower() in ("1", "true")
        start, limit = int(q.get("cursor") or 0), min(int(q.get("limit") or 100), 1000)
        page = [m if with_meta else {k: v for k, v in m.items() if k != "metadata"}
                for m in msgs[start:start + limit]]
        more = start + limit < len(msgs)
        return _ok(messages=page, has_more=more,
                   response_metadata={"next_cursor": str(start + limit) if more else ""})

    def _replies(self, q: dict[str, Any]) -> web.Response:
        if not q.get("channel"):
            return _err("channel_not_found")
        parent = q.get("ts")
        if parent not in self.messages:
            return _err("thread_not_found")
        msgs = sorted((m for ts, m in self.messages.items()
                       if ts == parent or m.get("thread_ts") == parent),
                      key=lambda m: float(m["ts"]))
        return self._page(msgs, q)

    def thread(self, ts: str) -> list[dict[str, Any]]:
        """The replies in the thread of message ``ts``, oldest first."""
        return sorted((m for m in self.messages.values() if m.get("thread_ts") == ts),
                      key=lambda m: float(m["ts"]))

    def _history(self, q: dict[str, Any]) -> web.Response:
        if not q.get("channel"):
            return _err("channel_not_found")
        oldest = float(q.get("oldest") or 0)
        msgs = sorted((m for ts, m in self.messages.items() if float(ts) > oldest
                       and (not m.get("thread_ts") or m.get("reply_broadcast"))),
                      key=lambda m: float(m["ts"]), reverse=True)
        return self._page(msgs, q)

    def posted(self) -> list[dict[str, Any]]:
        return [b for m, b in self.calls if m == "chat.postMessage"]

    def plan_posts(self) -> list[dict[str, Any]]:
        """Posts of approval requests (``sre_agent_plan`` metadata); incidents are posted
        to their channels too (``sre_agent_incident``)."""
        out = []
        for body in self.posted():
            meta = body.get("metadata")
            meta = orjson.loads(meta) if isinstance(meta, str) else (meta or {})
            if meta.get("event_type") == "sre_agent_plan":
                out.append(body)
        return out

    def updates(self) -> list[dict[str, Any]]:
        return [b for m, b in self.calls if m == "chat.update"]

    async def start(self) -> SlackStandin:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        self._runner, self.port = await serve(app, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def button_value(message: dict[str, Any], action_id: str) -> str | None:
    """The ``value`` of the button ``action_id`` in a posted message's blocks."""
    for block in message.get("blocks", []):
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            if el.get("action_id") == action_id:
                return str(el.get("value"))
    return None


def signed_interaction(secret: str, user_id: str, action_id: str, value: str,
                       user_name: str = "", ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a ``block_actions`` callback, signed like Slack does."""
    payload = {"type": "block_actions", "user": {"id": user_id, "username": user_name},
               "team": {"id": "T0"}, "channel": {"id": "C0APPROVALS"},
               "response_url": "https://hooks.slack.com/actions/T0/1/x", "trigger_id": "1.2.3",
               "actions": [{"action_id": action_id, "block_id": f"plan:{value}", "value": value,
                            "type": "button", "action_ts": str(time.time())}]}
    body = ("payload=" + quote(orjson.dumps(payload).decode())).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    sig = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": str(sig),
                  "Content-Type": "application/x-www-form-urlencoded"}
