"""What every API view shares: the read model, auth, JSON errors, request bodies.

Views are declared with :meth:`Api.endpoint`, which checks the credential the
view needs through the one :class:`~sre_agent.web.auth.Gate` (bearer token and
role, webhook token, Slack signature), turns bad input into a ``4xx`` JSON
``{"error": ...}`` and never lets an exception escape as an HTML 500.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from faust.web import Request, Response, View
from pydantic import BaseModel, ValidationError

from ..processors.redact import SIGNED_KEYS, redact_obj
from ..readmodel import QueryError, ReadModel
from ..schemas import AuditRecord
from .auth import Authenticator, Denied, Gate, Need, Principal, Role

if TYPE_CHECKING:  # not imported at run time: streams imports this package
    from ..streams.context import StreamContext
    from ..streams.projection import Projection

__all__ = ["MAX_BODY", "Api", "BadRequest", "json_body", "read_body", "validation_message"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024

Handler = Callable[..., Awaitable[Response]]


class BadRequest(ValueError):
    """Bad input; ``status`` and the message go back to the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def validation_message(exc: ValidationError) -> str:
    """A one-line message naming every bad field."""
    parts = []
    for e in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{loc}: {e['msg']}")
    return "invalid request body: " + "; ".join(parts)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, or :class:`BadRequest` 413 when it exceeds ``limit`` bytes."""
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        raise BadRequest(f"request body too large (at most {limit} bytes)", status=413)
    raw = await request.read()
    if len(raw) > limit:
        raise BadRequest(f"request body too large (at most {limit} bytes)", status=413)
    return raw


async def json_body(request: Request, model: type[BaseModel]) -> Any:
    """Parse and validate a JSON body as ``model`` or raise :class:`BadRequest`."""
    ctype = request.headers.get("Content-Type", "")
    if "json" not in ctype:
        raise BadRequest("Content-Type must be application/json", status=415)
    raw = await read_body(request)
    if not raw.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None


def _scrubbed(view: View, resp: Response) -> Response:
    """The API is an outbound path too: secrets out of every JSON answer."""
    if getattr(resp, "content_type", "") != "application/json" or not resp.body:
        return resp
    try:
        data = orjson.loads(resp.body)
    except (orjson.JSONDecodeError, TypeError):
        return resp
    clean = redact_obj(data, personal=False, keep=SIGNED_KEYS)
    if clean == data:
        return resp
    return view.json(clean, status=resp.status,
                     headers={k: v for k, v in resp.headers.items()
                              if k.lower() not in ("content-type", "content-length")})


@dataclass
class Api:
    """The API's shared state, created once per app by :func:`sre_agent.web.api.register`."""

    ctx: StreamContext
    model: ReadModel
    auth: Authenticator
    projection: Projection
    #: requests by (endpoint, status class), chat commands by name
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    gate: Gate | None = None

    def __post_init__(self) -> None:
        if self.gate is None:
            self.gate = Gate(self.ctx.settings)

    async def check(self, request: Request, need: Need, name: str = "") -> Principal | None:
        """The principal ``need`` asks for, or :class:`Denied` (audited for Slack)."""
        assert self.gate is not None
        if need is None:
            return None
        if need == "webhook":
            return self.gate.webhook(request.headers, name)
        if need == "slack":
            body = await read_body(request)
            try:
                return self.gate.slack(request.headers, body)
            except Denied as exc:
                if exc.status == 401:
                    log.warning("rejected %s request: %s", name, exc.reason)
                    await self.ctx.send(AuditRecord(
                        actor="slack", action="slack.signature_rejected", subject=name,
                        details={"reason": exc.reason, "remote": getattr(request, "remote", None),
                                 "bytes": len(body)}))
                raise
        return self.gate.bearer(request.headers, need)

    def authorize(self, view: View, request: Request, role: Role) -> Principal | Response:
        """A bearer-token check for views not declared with :meth:`endpoint`."""
        assert self.gate is not None
        try:
            return self.gate.bearer(request.headers, role)
        except Denied as exc:
            return view.json({"error": exc.message}, status=exc.status, headers=exc.headers)

    def endpoint(self, name: str, need: Need) -> Callable[[Handler], Handler]:
        """Decorate a view method: the credential ``need`` asks for, errors as JSON, counts.

        The method receives ``principal=`` (None when ``need`` is None).
        """

        def deco(fn: Handler) -> Handler:
            @functools.wraps(fn)
            async def wrapper(view: View, request: Request, **kw: Any) -> Response:
                try:
                    principal = await self.check(request, need, name)
                except Denied as exc:
                    self.requests[(name, "4xx" if exc.status < 500 else "5xx")] += 1
                    return view.json({"error": exc.message}, status=exc.status,
                                     headers=exc.headers)
                except BadRequest as exc:
                    self.requests[(name, "4xx")] += 1
                    return view.json({"error": str(exc)}, status=exc.status)
                try:
                    resp = await fn(view, request, principal=principal, **kw)
                except (BadRequest, QueryError) as exc:
                    status = getattr(exc, "status", 400)
                    resp = view.json({"error": str(exc)}, status=status)
                except Exception:
                    log.exception("API endpoint %s failed", name)
                    resp = view.json({"error": "internal error; see the agent's log"}, status=500)
                self.requests[(name, f"{resp.status // 100}xx")] += 1
                return _scrubbed(view, resp)

            return wrapper

        return deco
