"""A local stand-in for Anthropic's Messages API, driven by the real ``anthropic`` client.

``POST /v1/messages`` checks the key (``x-api-key``, or ``Authorization: Bearer`` as
the 2.x client sends it) and ``anthropic-version``, validates
the request body the way the API does (``model``, ``max_tokens``, ``messages``
required; a forced ``tool_choice`` must name a declared tool) and answers with
a proper Message object: ``id``, ``type: "message"``, ``role``, ``model``,
``content`` (a ``tool_use`` block when a tool is forced, else ``text``),
``stop_reason`` and ``usage`` with ``input_tokens``/``output_tokens``.

Modes (``standin.mode``):

* ``"ok"`` — answer with ``standin.tool_input`` (a dict) as the tool's input;
* ``"error"`` — HTTP 500 ``{"type": "error", "error": {"type": "api_error", ...}}``;
* ``"overloaded"`` — HTTP 529 ``overloaded_error``;
* ``"slow"`` — sleep ``standin.delay`` seconds before answering (client timeouts);
* ``"garbage"`` — a ``tool_use`` block whose input does not match the schema.

Every request body is kept in ``standin.requests`` (tests check redaction).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from . import serve

__all__ = ["AnthropicStandin"]

_ids = itertools.count(1)


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@dataclass
class AnthropicStandin:
    """Run with ``await standin.start()``; ``standin.url`` is the client's ``base_url``."""

    api_key: str = "test-key"
    mode: str = "ok"
    delay: float = 5.0
    tool_input: dict[str, Any] = field(default_factory=lambda: {"hypotheses": []})
    requests: list[dict[str, Any]] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _messages(self, request: web.Request) -> web.Response:
        auth = request.headers.get("authorization", "")
        given = request.headers.get("x-api-key") or (auth[7:] if auth.startswith("Bearer ") else "")
        if given != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "invalid_request_error", "body is not valid JSON")
        self.requests.append(body)
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                return _error(400, "invalid_request_error", f"{key}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return _error(400, "invalid_request_error", "max_tokens: must be >= 1")
        tools = {t.get("name") for t in body.get("tools", [])}
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool" and choice.get("name") not in tools:
            return _error(400, "invalid_request_error", "tool_choice names an undeclared tool")
        if self.mode == "error":
            return _error(500, "api_error", "Internal server error")
        if self.mode == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        prompt = orjson.dumps(body.get("messages")) + orjson.dumps(body.get("system", ""))
        in_tokens = max(1, len(prompt) // 4)
        if choice.get("type") == "tool":
            tool_input: Any = self.tool_input
            if self.mode == "garbage":
                tool_input = {"hypotheses": [{"cause": 42}]}
            content = [{"type": "tool_use", "id": f"toolu_{next(_ids):06d}",
                        "name": choice["name"], "input": tool_input}]
            stop = "tool_use"
            out_tokens = max(1, len(orjson.dumps(tool_input)) // 4)
        else:
            content = [{"type": "text", "text": "No tool was requested."}]
            stop, out_tokens = "end_turn", 6
        out_tokens = min(out_tokens, body["max_tokens"])
        msg = {"id": f"msg_{next(_ids):06d}", "type": "message", "role": "assistant",
               "model": body["model"], "content": content, "stop_reason": stop,
               "stop_sequence": None,
               "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        return web.Response(body=orjson.dumps(msg), content_type="application/json",
                            headers={"request-id": f"req_{next(_ids):06d}"})

    async def start(self) -> AnthropicStandin:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner, self.port = await serve(app, self.host, self.port, shutdown_timeout=0.2,
                                              handler_cancellation=True)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
