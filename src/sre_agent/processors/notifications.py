"""Incident notifications as a pure state machine: who is told what, once.

One :class:`NotifyState` per incident (the notifier's table, keyed by incident
id like ``incidents``, ``rca-results`` and ``incident-triage``). Each event
goes through :func:`decide` and comes out as :class:`Send` effects, each with
an idempotency key ``<incident>#<cycle>:<sink>:<event>[:<n>]`` (the cycle is the
incident's reopen count). The stream layer records a key as *pending* in the
table (flushed to the changelog) before it calls the sink and as *sent* after,
so a redelivered event after a crash or a rebalance finds its keys and sends
nothing twice (see :mod:`sre_agent.streams.notify_agent`).

Rules:

* every incident, whatever its cause or RCA, is routed to the sinks whose scope
  matches (:mod:`.routing`) when it opens — or, for a sink with
  ``escalate_after``, only if it is still open, unacknowledged and not snoozed
  that long after the agent first saw it (escalation);
* Slack sinks get one thread per incident: the parent message when it opens,
  then replies for material changes (severity, services, root cause, status),
  triage acts (ack, assign, snooze, comments) and the resolution; a reopened
  incident goes back to its thread;
* PagerDuty gets trigger, acknowledge (on ack) and resolve, deduplicated by
  incident and cycle; e-mail and WeCom get the open (or escalation) and the
  resolution;
* a sink that stops matching (e.g. the severity dropped) gets no more updates,
  but still gets the resolution of what it was told;
* a snoozed incident notifies nobody new until the snooze ends (the resolution
  still goes out); a failed send is retried with backoff, at most
  ``notify.max_attempts`` times.

Pure: ``now`` is the caller's processing time (unix seconds).

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.config import NotifySink
>>> from sre_agent.schemas import Incident
>>> rules = Rules(sinks=[NotifySink(name="oncall", type="slack", channel="#oncall")])
>>> t = datetime(2025, 11, 13, tzinfo=UTC)
>>> inc = Incident(incident_id="i1", title="api: latency up", fingerprint="f", opened_at=t,
...                time=t, severity="warning", services=["api"])
>>> st, out = decide(None, IncidentIn(inc), 1000.0, rules)
>>> [(s.sink, s.msg.event, s.msg.key) for s in out]
[('oncall', 'open', 'i1#0:oncall:open')]
>>> st, out = decide(st, IncidentIn(inc), 1001.0, rules)  # redelivered: nothing new
>>> out
[]
>>> done = inc.model_copy(update={"status": "resolved", "revision": 2, "resolved_at": t})
>>> [s.msg.event for s in decide(st, IncidentIn(done), 1100.0, rules)[1]]
['resolve']
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

from ..config import NotifySink
from ..schemas import Incident, RcaResult, TriageEvent
from .routing import Facts, in_scope

__all__ = ["IncidentIn", "Msg", "NotifyState", "RcaIn", "Rules", "Send", "Tick", "TriageIn",
           "begin", "decide", "failed", "next_due", "sent"]

MsgEvent = Literal["open", "escalate", "reopen", "update", "resolve", "ack", "unack", "assign",
                   "snooze", "comment"]
#: keys remembered as done per incident (most recent)
MAX_SENT = 300
#: first retry delay of a failed send (seconds), doubled per attempt, capped
RETRY_BASE = 30.0
RETRY_MAX = 900.0


class Msg(BaseModel):
    """What one sink is told; the sink renders it (and redacts it) for its wire."""

    incident_id: str
    event: MsgEvent
    key: str
    #: PagerDuty dedup key (incident and cycle): trigger, acknowledge and resolve meet
    dedup_key: str
    cycle: int = 0
    title: str
    severity: str
    status: str
    services: list[str] = Field(default_factory=list)
    root_service: str | None = None
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    impact: float | None = None
    reasons: list[str] = Field(default_factory=list)
    cause: str = ""
    actor: str = ""
    comment: str = ""
    assignee: str | None = None
    acked_by: str | None = None
    url: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Send(NamedTuple):
    sink: str
    msg: Msg


class SinkState(BaseModel):
    #: cycle the sink was last told about (-1: never)
    cycle: int = -1
    resolved: bool = False
    #: slack: the incident's thread ``{"channel", "ts"}``
    thread: dict[str, str] = Field(default_factory=dict)
    #: signature of what the sink was last told (material changes only)
    sig: str = ""


class Retry(BaseModel):
    sink: str
    msg: Msg
    attempts: int = 1
    next: float = 0.0
    error: str = ""


class NotifyState(BaseModel):
    incident_id: str
    incident: Incident
    #: processing time the agent first saw this cycle (escalation counts from here)
    first_seen: float
    cycle: int = 0
    revision: int = 0
    cause: str = ""
    acked_by: str | None = None
    acked_at: float | None = None
    assignee: str | None = None
    snoozed_until: float | None = None
    sinks: dict[str, SinkState] = Field(default_factory=dict)
    #: idempotency keys done (sent, or given up)
    sent: list[str] = Field(default_factory=list)
    #: sends begun and not known to be finished: in doubt after a crash
    pending: dict[str, Retry] = Field(default_factory=dict)
    #: failed sends waiting for their next attempt
    retry: dict[str, Retry] = Field(default_factory=dict)


@dataclass(frozen=True)
class IncidentIn:
    incident: Incident


@dataclass(frozen=True)
class RcaIn:
    rca: RcaResult


@dataclass(frozen=True)
class TriageIn:
    event: TriageEvent


@dataclass(frozen=True)
class Tick:
    pass


Event = IncidentIn | RcaIn | TriageIn | Tick


@dataclass(frozen=True)
class Rules:
    sinks: list[NotifySink] = field(default_factory=list)
    #: link to an incident: ``{incident_id}`` is replaced
    console_url: str | None = None
    max_attempts: int = 5


# ---------------------------------------------------------------------- helpers
def _facts(inc: Incident) -> Facts:
    return Facts(severity=inc.severity, services=tuple(inc.services),
                 namespace=inc.labels.get("namespace", ""), title=inc.title, labels=inc.labels)


def _sig(st: NotifyState) -> str:
    inc = st.incident
    return "|".join([inc.severity, "resolved" if inc.status == "resolved" else "open",
                     ",".join(sorted(inc.services)), st.cause])


def _snoozed(st: NotifyState, now: float) -> bool:
    return st.snoozed_until is not None and now < st.snoozed_until


def _msg(st: NotifyState, rules: Rules, event: MsgEvent, key: str, actor: str = "",
         comment: str = "") -> Msg:
    inc = st.incident
    url = rules.console_url.replace("{incident_id}", inc.incident_id) if rules.console_url else None
    return Msg(incident_id=inc.incident_id, event=event, key=key,
               dedup_key=f"{inc.incident_id}#{st.cycle}", cycle=st.cycle, title=inc.title,
               severity=inc.severity, status=inc.status, services=list(inc.services),
               root_service=inc.root_service, opened_at=inc.opened_at,
               resolved_at=inc.resolved_at, resolved_by=inc.resolved_by, impact=inc.impact,
               reasons=list(inc.severity_reasons[:4]), cause=st.cause, actor=actor,
               comment=comment, assignee=st.assignee, acked_by=st.acked_by, url=url,
               labels=dict(inc.labels))


def _key(st: NotifyState, sink: str, event: str, n: str = "") -> str:
    return f"{st.incident_id}#{st.cycle}:{sink}:{event}" + (f":{n}" if n else "")


def _escalation_due(st: NotifyState, sink: NotifySink) -> float:
    return max(st.first_seen + sink.escalate_after, st.snoozed_until or 0.0)


# ---------------------------------------------------------------------- routing
def _route(st: NotifyState, now: float, rules: Rules) -> list[Send]:
    """Opens, escalations, updates and resolutions the incident's state calls for."""
    out: list[Send] = []
    facts = _facts(st.incident)
    resolved = st.incident.status == "resolved"
    sig = _sig(st)
    for sink in rules.sinks:
        ss = st.sinks.setdefault(sink.name, SinkState())
        told = ss.cycle == st.cycle
        if resolved:
            if told and not ss.resolved:
                ss.resolved, ss.sig = True, sig
                if sink.send_resolved:
                    out.append(Send(sink.name, _msg(st, rules, "resolve",
                                                    _key(st, sink.name, "resolve"))))
            continue
        if not told:
            if not in_scope(sink.scope, facts) or _snoozed(st, now):
                continue
            if sink.escalate_after > 0:
                if st.acked_by is not None or now < _escalation_due(st, sink):
                    continue  # the timer comes back when it is due
                event: MsgEvent = "escalate"
            else:
                event = "reopen" if sink.type == "slack" and ss.thread else "open"
            ss.cycle, ss.resolved, ss.sig = st.cycle, False, sig
            out.append(Send(sink.name, _msg(st, rules, event, _key(st, sink.name, "open"))))
        elif sink.type == "slack" and ss.sig != sig and not _snoozed(st, now):
            ss.sig = sig
            n = hashlib.blake2b(sig.encode(), digest_size=4).hexdigest()
            out.append(Send(sink.name, _msg(st, rules, "update",
                                            _key(st, sink.name, "update", f"{st.revision}-{n}"))))
    return out


def _retries(st: NotifyState, now: float) -> list[Send]:
    return [Send(r.sink, r.msg) for r in st.retry.values() if r.next <= now]


# ---------------------------------------------------------------------- transitions
def decide(state: NotifyState | None, event: Event, now: float,
           rules: Rules) -> tuple[NotifyState | None, list[Send]]:
    """One step: the new state and what to send. ``state`` is not modified."""
    st = state.model_copy(deep=True) if state is not None else None
    # sends begun before a crash (or a rebalance) and never finished go again first
    doubt = [Send(r.sink, r.msg) for r in st.pending.values()] if st is not None else []
    st, out = _decide(st, event, now, rules)
    return st, doubt + out


def _decide(st: NotifyState | None, event: Event, now: float,
            rules: Rules) -> tuple[NotifyState | None, list[Send]]:
    if isinstance(event, IncidentIn):
        return _on_incident(st, event.incident, now, rules)
    if st is None:
        return None, []  # RCA, triage or tick of an incident never seen open
    if isinstance(event, RcaIn):
        top = event.rca.hypotheses[0] if event.rca.hypotheses else None
        if top is not None and event.rca.incident_revision >= 1:
            st.cause = f"{top.cause_type} on {top.service} ({top.confidence:.0%})"
        return st, _route(st, now, rules)
    if isinstance(event, TriageIn):
        return st, _on_triage(st, event.event, now, rules)
    return st, _retries(st, now) + _route(st, now, rules)


def _on_incident(st: NotifyState | None, inc: Incident, now: float,
                 rules: Rules) -> tuple[NotifyState | None, list[Send]]:
    if st is None:
        if inc.status == "resolved":
            return None, []  # never told anyone: nothing to close
        st = NotifyState(incident_id=inc.incident_id, incident=inc, first_seen=now,
                         cycle=inc.reopen_count, revision=inc.revision)
        return st, _route(st, now, rules)
    if inc.revision < st.revision:
        return st, []  # an older revision arrived late
    if inc.reopen_count > st.cycle and inc.status != "resolved":
        st.cycle, st.first_seen = inc.reopen_count, now
        st.acked_by = st.acked_at = st.snoozed_until = None
    st.incident, st.revision = inc, inc.revision
    return st, _route(st, now, rules)


def _on_triage(st: NotifyState, ev: TriageEvent, now: float, rules: Rules) -> list[Send]:
    if ev.action == "ack":
        st.acked_by, st.acked_at = ev.actor, now
    elif ev.action == "unack":
        st.acked_by = st.acked_at = None
    elif ev.action == "assign":
        st.assignee = ev.assignee or None
    elif ev.action == "snooze" and ev.minutes:
        st.snoozed_until = now + ev.minutes * 60.0
    elif ev.action == "resolve":
        return []  # the correlator resolves it; its resolved event carries resolved_by
    out: list[Send] = []
    for sink in rules.sinks:
        ss = st.sinks.get(sink.name)
        if ss is None or ss.cycle != st.cycle or ss.resolved:
            continue  # tell only sinks that know about this cycle of the incident
        if sink.type == "slack" or (sink.type == "pagerduty" and ev.action == "ack"):
            out.append(Send(sink.name, _msg(st, rules, ev.action,
                                            _key(st, sink.name, ev.action, ev.event_id),
                                            actor=ev.actor, comment=ev.comment)))
    return out + _route(st, now, rules)


# ---------------------------------------------------------------------- outcomes
def begin(st: NotifyState, send: Send, now: float) -> bool:
    """Mark ``send`` as begun; False when its key is already done (skip it).

    A send already pending is *in doubt* (begun by a worker that died): the caller
    checks whether it landed where it can (Slack's history) before sending again.
    """
    key = send.msg.key
    if key in st.sent:
        st.pending.pop(key, None)
        return False
    doubt = st.pending.get(key)
    prev = st.retry.pop(key, None) or doubt
    # ``next`` of a pending send is when it was first begun (the in-doubt lookup's start)
    st.pending[key] = Retry(sink=send.sink, msg=send.msg, attempts=prev.attempts if prev else 0,
                            next=doubt.next if doubt is not None else now)
    return True


def sent(st: NotifyState, key: str) -> None:
    """Record ``key`` as done (sent, or given up)."""
    st.pending.pop(key, None)
    st.retry.pop(key, None)
    if key not in st.sent:
        st.sent.append(key)
        del st.sent[:-MAX_SENT]


def failed(st: NotifyState, send: Send, error: str, now: float, rules: Rules) -> bool:
    """Record a failed send; True when it is given up (``max_attempts`` reached)."""
    key = send.msg.key
    r = st.pending.pop(key, None) or st.retry.get(key) or Retry(sink=send.sink, msg=send.msg,
                                                                attempts=0)
    r.attempts += 1
    r.error = error[:300]
    if r.attempts >= rules.max_attempts:
        sent(st, key)
        return True
    r.next = now + min(RETRY_BASE * 2 ** (r.attempts - 1), RETRY_MAX)
    st.retry[key] = r
    return False


def next_due(st: NotifyState, rules: Rules) -> float | None:
    """Earliest processing time at which a :class:`Tick` may send something."""
    times = [r.next for r in st.retry.values()] + [r.next for r in st.pending.values()]
    if st.incident.status != "resolved":
        if st.snoozed_until is not None:
            times.append(st.snoozed_until)
        facts = _facts(st.incident)
        for sink in rules.sinks:
            ss = st.sinks.get(sink.name)
            if sink.escalate_after > 0 and st.acked_by is None \
                    and (ss is None or ss.cycle != st.cycle) and in_scope(sink.scope, facts):
                times.append(_escalation_due(st, sink))
    return min(times) if times else None


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
