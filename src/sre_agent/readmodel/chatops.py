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

Examples
--------
>>> parse_command("rca inc-42")
Command(name='rca', ref='inc-42', text='', rating=None)
>>> parse_command("  pattern   search  db pool exhausted ")
Command(name='pattern_search', ref='', text='db pool exhausted', rating=None)
>>> parse_command("feedback inc-42 good spot on").rating
'good'
>>> try:
...     parse_command("approve")
... except CommandError as exc:
...     print(exc)
usage: approve <plan> [comment]
>>> allowed("approve", None), allowed("approve", "oncall"), allowed("status", "viewer")
(False, True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "SLACK_ROLES",
    "Command",
    "CommandError",
    "allowed",
    "parse_command",
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
}


class CommandError(ValueError):
    """Text that is not a valid command; the message is the reply."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    ref: str = ""
    text: str = ""
    rating: str | None = None


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
    if head in ("help", "status", "incidents"):
        return Command(head)
    if not rest:
        raise CommandError("usage: " + COMMANDS[head][0])
    ref = rest[0][:128]
    if head == "feedback":
        if len(rest) < 2 or rest[1].lower() not in ("good", "bad"):
            raise CommandError("usage: " + COMMANDS["feedback"][0])
        return Command("feedback", ref=ref, rating=rest[1].lower(), text=" ".join(rest[2:])[:2000])
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
