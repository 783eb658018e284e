"""ChatOps: the ``/sre`` slash command's grammar and who may run what.

Commands (seed 003's chat commands)::

    status                        the agent and the open incidents at a glance
    incidents                     open incidents
    rca <incident>                root-cause hypotheses with evidence
    pattern search <text>         similar past incidents, patterns, runbooks
    approve <plan> [comment]      vote for a plan (same roles and quorum as the buttons)
    reject <plan> [reason]        vote against a plan
    feedback <incident> good|bad [comment]
    fix <incident>                propose a plan through the risk policy (never executes)
    ack <incident> [comment]      acknowledge (stops the PagerDuty escalation)
    assign <incident> <who|me>    set the assignee (``assign <incident> -`` unassigns)
    snooze <incident> <duration>  no notification or escalation for a while (30m, 2h, 1d)
    resolve <incident> [comment]  resolve it now (a new firing reopens it)
    silence <k=glob>... for <duration> [comment]
                                  drop matching signals (service=, name=, namespace=,
                                  any label); ``silence ... from <UTC time> for <d>`` is
                                  a maintenance window
    silences                      active silences and maintenance windows
    unsilence <silence>           expire a silence now
    detect [service]              what the detectors see now, with matching patterns

Examples
--------
>>> c = parse_command("rca inc-42")
>>> c.name, c.ref, c.text
('rca', 'inc-42', '')
>>> c = parse_command("  pattern   search  db pool exhausted ")
>>> c.name, c.text
('pattern_search', 'db pool exhausted')
>>> parse_command("feedback inc-42 good spot on").rating
'good'
>>> try:
...     parse_command("approve")
... except CommandError as exc:
...     print(exc)
usage: approve <plan> [comment]
>>> allowed("approve", None), allowed("approve", "oncall"), allowed("status", "viewer")
(False, True, True)
>>> c = parse_command("silence service=checkout namespace=prod for 2h deploy of v2.4")
>>> c.name, c.matchers, c.minutes, c.text
('silence', {'service': 'checkout', 'namespace': 'prod'}, 120.0, 'deploy of v2.4')
>>> parse_command("snooze inc-42 45m").minutes
45.0
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "COMMANDS",
    "SLACK_ROLES",
    "Command",
    "CommandError",
    "allowed",
    "parse_command",
    "parse_duration",
    "slack_role",
    "usage",
]

#: Slack roles, least to most privileged; approval roles are those of ``Approval.role``
SLACK_ROLES: tuple[str, ...] = ("viewer", "oncall", "sre", "lead", "admin")

#: command -> (usage, least role needed; None: any verified Slack user; "read": the
#: configured ``slack.read_role``)
COMMANDS: dict[str, tuple[str, str | None]] = {
    "help": ("help", None),
    "status": ("status", "read"),
    "incidents": ("incidents", "read"),
    "rca": ("rca <incident>", "read"),
    "pattern_search": ("pattern search <text>", "read"),
    "approve": ("approve <plan> [comment]", "oncall"),
    "reject": ("reject <plan> [reason]", "oncall"),
    "feedback": ("feedback <incident> good|bad [comment]", "oncall"),
    "fix": ("fix <incident>", "oncall"),
    "ack": ("ack <incident> [comment]", "oncall"),
    "assign": ("assign <incident> <who|me|-> [comment]", "oncall"),
    "snooze": ("snooze <incident> <duration like 30m, 2h, 1d> [comment]", "oncall"),
    "resolve": ("resolve <incident> [comment]", "oncall"),
    "silence": ("silence <name=glob>... [from <UTC time>] for <duration> <comment>", "oncall"),
    "silences": ("silences", "read"),
    "unsilence": ("unsilence <silence>", "oncall"),
    "detect": ("detect [service]", "read"),
}


class CommandError(ValueError):
    """Text that is not a valid command; the message is the reply."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    ref: str = ""
    text: str = ""
    rating: str | None = None
    #: silence: matchers; snooze/silence: minutes; silence: start (None: now)
    matchers: dict[str, str] = field(default_factory=dict)
    minutes: float | None = None
    start: datetime | None = None
    #: assign: the assignee ("" unassigns)
    assignee: str | None = None


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"s": 1 / 60, "m": 1.0, "": 1.0, "h": 60.0, "d": 1440.0, "w": 10080.0}


def parse_duration(text: str) -> float:
    """Minutes in ``30m``, ``2h``, ``1.5d``, ``1w`` or a bare number of minutes.

    >>> parse_duration("2h"), parse_duration("90"), parse_duration("1d")
    (120.0, 90.0, 1440.0)
    """
    m = _DURATION.match(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise CommandError(f"not a duration: {text!r} (use e.g. 30m, 2h, 1d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _parse_silence(rest: list[str]) -> Command:
    matchers: dict[str, str] = {}
    i = 0
    while i < len(rest) and "=" in rest[i]:
        key, _, pattern = rest[i].partition("=")
        if not key or not pattern:
            raise CommandError("usage: " + COMMANDS["silence"][0])
        matchers[key] = pattern
        i += 1
    start = None
    if i + 1 < len(rest) and rest[i].lower() == "from":
        try:
            start = datetime.fromisoformat(rest[i + 1].replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(f"not a UTC time: {rest[i + 1]!r} (use 2025-11-14T02:00)") from None
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        i += 2
    if not matchers or i + 1 >= len(rest) or rest[i].lower() != "for":
        raise CommandError("usage: " + COMMANDS["silence"][0])
    minutes = parse_duration(rest[i + 1])
    comment = " ".join(rest[i + 2:])[:2000]
    if not comment:
        raise CommandError("say why: " + COMMANDS["silence"][0])
    return Command("silence", text=comment, matchers=matchers, minutes=minutes, start=start)


def usage() -> str:
    return "Usage: `/sre " + "`, `/sre ".join(u for u, _ in COMMANDS.values()) + "`"


def parse_command(text: str) -> Command:
    """Parse the slash command's text; raise :class:`CommandError` with the usage."""
    words = text.split()
    if not words:
        return Command("help")
    head = words[0].lower()
    rest = words[1:]
    if head == "pattern":
        if not rest or rest[0].lower() != "search" or len(rest) < 2:
            raise CommandError("usage: " + COMMANDS["pattern_search"][0])
        return Command("pattern_search", text=" ".join(rest[1:])[:500])
    if head not in COMMANDS:
        raise CommandError(f"unknown command {head!r}. " + usage())
    if head in ("help", "status", "incidents", "silences"):
        return Command(head)
    if head == "detect":
        return Command("detect", ref=rest[0][:128] if rest else "")
    if head == "silence":
        return _parse_silence(rest)
    if not rest:
        raise CommandError("usage: " + COMMANDS[head][0])
    ref = rest[0][:128]
    if head == "feedback":
        if len(rest) < 2 or rest[1].lower() not in ("good", "bad"):
            raise CommandError("usage: " + COMMANDS["feedback"][0])
        return Command("feedback", ref=ref, rating=rest[1].lower(), text=" ".join(rest[2:])[:2000])
    if head == "assign":
        if len(rest) < 2:
            raise CommandError("usage: " + COMMANDS["assign"][0])
        who = rest[1][:256]
        return Command("assign", ref=ref, assignee="" if who == "-" else who,
                       text=" ".join(rest[2:])[:2000])
    if head == "snooze":
        if len(rest) < 2:
            raise CommandError("usage: " + COMMANDS["snooze"][0])
        minutes = parse_duration(rest[1])
        if minutes > 7 * 24 * 60:
            raise CommandError("snooze for at most 7 days")
        return Command("snooze", ref=ref, minutes=minutes, text=" ".join(rest[2:])[:2000])
    return Command(head, ref=ref, text=" ".join(rest[1:])[:2000])


def slack_role(user_roles: Mapping[str, str], user_id: str) -> str | None:
    """The role mapped to a Slack user id (else the ``*`` entry), or None.

    Never by user name: names are not unique and users can change theirs.

    >>> slack_role({"U1": "lead", "ann": "admin"}, "U1"), slack_role({"ann": "admin"}, "U2")
    ('lead', None)
    """
    for key in (user_id, "*"):
        role = user_roles.get(key) if key else None
        if role in SLACK_ROLES:
            return role
    return None


def allowed(command: str, role: str | None, read_role: str = "viewer") -> bool:
    """Whether ``role`` may run ``command`` (read commands need ``read_role``).

    >>> allowed("incidents", None), allowed("incidents", "viewer"), allowed("incidents", None, "any")
    (False, True, True)
    >>> allowed("approve", "viewer"), allowed("help", None)
    (False, True)
    """
    needed = COMMANDS[command][1]
    if needed == "read":
        needed = None if read_role == "any" else read_role
    if needed is None:
        return True
    return role is not None and SLACK_ROLES.index(role) >= SLACK_ROLES.index(needed)
