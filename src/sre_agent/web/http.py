"""What every API view shares: the read model, auth, JSON errors, request bodies.

Views are declared with :meth:`Api.endpoint`, which authenticates the bearer
token, checks the role, turns bad input into a ``4xx`` JSON ``{"error": ...}``
and never lets an exception escape as an HTML 500.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.web import Request, Response, View
from pydantic import BaseModel, ValidationError

from ..readmodel import QueryError, ReadModel
from ..streams.projection import Projection
from .auth import Authenticator, Principal, Role
from ..streams.context import StreamContext

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

    def authorize(self, view: View, request: Request, role: Role) -> Principal | Response:
        if not self.ctx.settings.api.tokens:
            return view.json(
                {
                    "error": "API tokens are not configured on this agent "
                    "(set SRE_AGENT_API__TOKENS)"
                },
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = self.auth.identify(request.headers.get("Authorization"))
        if principal is None:
            return view.json(
                {"error": "missing or invalid bearer token (send 'Authorization: Bearer <token>')"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.allows(role):
            return view.json(
                {
                    "error": f"forbidden: this needs the {role} role; "
                    f"{principal.user} is {principal.role}"
                },
                status=403,
            )
        return principal

    def endpoint(self, name: str, role: Role | None) -> Callable[[Handler], Handler]:
        """Decorate a view method: auth (when ``role``), errors as JSON, request counts.

        The method receives ``principal=`` (None when ``role`` is None).
        """

        def deco(fn: Handler) -> Handler:
            @functools.wraps(fn)
            async def wrapper(view: View, request: Request, **kw: Any) -> Response:
                principal: Principal | None = None
                if role is not None:
                    got = self.authorize(view, request, role)
                    if not isinstance(got, Principal):
                        self.requests[(name, "4xx")] += 1
                        return got
                    principal = got
                try:
                    resp = await fn(view, request, principal=principal, **kw)
                except (BadRequest, QueryError) as exc:
                    status = getattr(exc, "status", 400)
                    resp = view.json({"error": str(exc)}, status=status)
                except Exception:
                    log.exception("API endpoint %s failed", name)
                    resp = view.json({"error": "internal error; see the agent's log"}, status=500)
                self.requests[(name, f"{resp.status // 100}xx")] += 1
                return resp

            return wrapper

        return deco
