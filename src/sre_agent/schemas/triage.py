"""On-call triage: what people do to incidents, and run-time silences.

Two topics:

* ``incident-triage`` (key: incident id, co-partitioned with ``incidents``): one
  :class:`TriageEvent` per human act — acknowledge, assign, snooze, resolve,
  unacknowledge. The actor comes from the authenticated caller (API token, Slack
  user id), never from the request body.
* ``silences`` (key: silence id, **compacted**): the latest state of each
  :class:`Silence` — a silence or maintenance window created at run time. A
  silence is never deleted, it is expired (``state="expired"``, ``ends_at`` set
  to when it was expired), so the compacted topic keeps its history for audit.

Examples
--------
>>> from datetime import UTC, datetime
>>> t = datetime(2025, 11, 13, tzinfo=UTC)
>>> s = Silence(silence_id="s1", matchers={"service": "checkout"}, starts_at=t,
...             ends_at=datetime(2025, 11, 13, 2, tzinfo=UTC), author="otto", comment="deploy")
>>> s.key(), s.active_at(datetime(2025, 11, 13, 1, tzinfo=UTC))
('s1', True)
>>> TriageEvent(incident_id="i1", action="snooze", actor="otto", minutes=30).key()
'i1'
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from .base import Event, UtcDatetime

__all__ = ["MATCHER_KEYS", "Silence", "TriageAction", "TriageEvent"]

TriageAction = Literal["ack", "unack", "assign", "snooze", "resolve", "comment"]

#: signal fields a matcher may name besides labels (shell globs on their values)
MATCHER_KEYS = ("service", "name", "rule", "kind", "severity", "fingerprint", "namespace")


class TriageEvent(Event):
    """One human act on an incident (topic ``incident-triage``)."""

    TOPIC: ClassVar[str] = "incident-triage"
    incident_id: str = Field(min_length=1, max_length=128)
    action: TriageAction
    #: who did it: ``api:<user>`` or ``slack:<user id>`` (from the credential)
    actor: str = Field(min_length=1, max_length=256)
    #: the role the credential carried when it was done
    role: str = ""
    #: assign: the new assignee ("" unassigns)
    assignee: str | None = Field(default=None, max_length=256)
    #: snooze: minutes of quiet (no notification, no escalation)
    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    comment: str = Field(default="", max_length=2000)
    #: resolve: the correlation group of the incident (where the correlator keeps it)
    group: str | None = Field(default=None, max_length=512)
    via: Literal["api", "console", "slack", "other"] = "api"

    def key(self) -> str:
        return self.incident_id


class Silence(Event):
    """A silence or maintenance window (topic ``silences``, compacted by id).

    Signals matching **every** matcher are dropped by the correlator while
    ``starts_at <= signal time < ends_at``. Matchers are shell globs on the
    signal's ``service``, ``name``/``rule``, ``kind``, ``severity``,
    ``fingerprint``, ``namespace`` or any label.
    """

    TOPIC: ClassVar[str] = "silences"
    silence_id: str = Field(min_length=1, max_length=128)
    matchers: dict[str, str] = Field(min_length=1, max_length=20)
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    author: str = Field(min_length=1, max_length=256)
    comment: str = Field(default="", max_length=2000)
    kind: Literal["silence", "maintenance"] = "silence"
    state: Literal["active", "expired"] = "active"
    #: who expired it early (empty when it simply ran out)
    expired_by: str = ""

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, v: dict[str, str]) -> dict[str, str]:
        for k, pat in v.items():
            if not k or len(k) > 128 or len(pat) > 512:
                raise ValueError("matcher names are 1-128 characters, patterns at most 512")
        return v

    def key(self) -> str:
        return self.silence_id

    def active_at(self, t: datetime) -> bool:
        """Whether the silence applies to a signal of time ``t``."""
        return self.state == "active" and self.starts_at <= t < self.ends_at
