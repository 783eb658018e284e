"""The one authentication path of the HTTP surface: :class:`Gate`.

Every view is declared through :meth:`sre_agent.web.http.Api.endpoint` with what
it needs, and the gate checks exactly that:

* a role (``viewer`` < ``operator`` < ``approver`` < ``admin``): a bearer token from
  ``SRE_AGENT_API__TOKENS`` (env only), a mapping of token to ``role`` or
  ``role:user``, sent as ``Authorization: Bearer <token>``;
* ``webhook``: the shared webhook token (``SRE_AGENT_API__WEBHOOK_TOKEN``) in the
  ``Authorization: Bearer`` or ``X-Webhook-Token`` header — never in the query
  string, which ends up in proxy logs;
* ``slack``: Slack's request signature (``SRE_AGENT_SLACK__SIGNING_SECRET``).

A refusal is a :class:`Denied` with its status (401, 403, or 503 when the
credential is not configured) and a message; never an exception escaping as 500.

>>> from sre_agent.config import ApiSettings
>>> a = Authenticator(ApiSettings(tokens={"t1": "approver:alice", "t2": "viewer"}))
>>> a.identify("Bearer t1")
Principal(user='alice', role='approver')
>>> a.identify("Bearer nope") is None
True
>>> a.identify("Bearer t1").allows("operator"), a.identify("Bearer t2").allows("operator")
(True, False)
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from slack_sdk.signature import SignatureVerifier

from ..config import ApiSettings, Settings
from ..sinks.slack import check_signature

__all__ = ["ROLES", "Authenticator", "Denied", "Gate", "Need", "Principal", "Role"]

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "admin")
#: what a view needs: a role (bearer token), the webhook token, Slack's signature, nothing
Need = Role | Literal["webhook", "slack"] | None


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


class Authenticator:
    def __init__(self, settings: ApiSettings) -> None:
        self._tokens: list[tuple[bytes, Principal]] = []
        for i, (token, spec) in enumerate(sorted(settings.tokens.items())):
            role, _, user = spec.partition(":")
            if role not in ROLES:
                raise ValueError(f"api.tokens[{i}]: unknown role {role!r}; use one of {ROLES}")
            self._tokens.append((token.encode(), Principal(user or f"{role}-{i}", role)))  # type: ignore[arg-type]

    def identify(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[7:].strip().encode()
        found = None
        for token, principal in self._tokens:  # constant-time compare of every token
            if hmac.compare_digest(token, given):
                found = principal
        return found


@dataclass
class Denied(Exception):
    """A refused request: the status and message of the JSON error answer."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    #: why, for the audit record (never the credential)
    reason: str = ""


class Gate:
    """Checks the credential a view needs; one instance per app."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = Authenticator(settings.api)
        self._any_token = bool(settings.api.tokens)
        secret = settings.api.webhook_token
        self._webhook = secret.get_secret_value().encode() if secret is not None else None
        signing = settings.slack.signing_secret
        self._slack = SignatureVerifier(signing.get_secret_value()) if signing is not None else None

    def bearer(self, headers: Mapping[str, str], role: Role) -> Principal:
        if not self._any_token:
            raise Denied(401, "API tokens are not configured on this agent "
                              "(set SRE_AGENT_API__TOKENS)", {"WWW-Authenticate": "Bearer"})
        principal = self.tokens.identify(headers.get("Authorization"))
        if principal is None:
            raise Denied(401, "missing or invalid bearer token (send 'Authorization: Bearer "
                              "<token>')", {"WWW-Authenticate": "Bearer"})
        if not principal.allows(role):
            raise Denied(403, f"forbidden: this needs the {role} role; "
                              f"{principal.user} is {principal.role}")
        return principal

    def webhook(self, headers: Mapping[str, str], source: str) -> Principal:
        if self._webhook is None:
            raise Denied(503, "webhooks are disabled: set SRE_AGENT_API__WEBHOOK_TOKEN")
        auth = headers.get("Authorization") or ""
        given = auth[7:].strip() if auth.startswith("Bearer ") else headers.get("X-Webhook-Token")
        if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), self._webhook):
            raise Denied(401, "missing or wrong webhook token (send it as 'Authorization: "
                              "Bearer <token>' or 'X-Webhook-Token: <token>')",
                         {"WWW-Authenticate": "Bearer"}, reason="webhook token")
        return Principal(f"webhook:{source}", "operator")

    def slack(self, headers: Mapping[str, str], body: bytes) -> Principal:
        if self._slack is None:
            raise Denied(503, "Slack is not configured on this agent "
                              "(set SRE_AGENT_SLACK__SIGNING_SECRET)")
        problem = check_signature(self._slack, body, headers)
        if problem:
            raise Denied(401, f"invalid Slack signature: {problem}", reason=problem)
        return Principal("slack", "viewer")
