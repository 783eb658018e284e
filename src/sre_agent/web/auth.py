"""Bearer-token auth with roles for the web API.

Tokens come from ``SRE_AGENT_API__TOKENS`` (env only), a mapping of token to
``role`` or ``role:user``. Roles are ordered: viewer < operator < approver < admin.
Webhooks authenticate with their own secrets instead (Slack signature, shared
webhook token), never with these tokens.

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
from dataclasses import dataclass
from typing import Literal

from ..config import ApiSettings

__all__ = ["ROLES", "Authenticator", "Principal", "Role"]

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "admin")


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
