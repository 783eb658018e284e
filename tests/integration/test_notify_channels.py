"""Incident notifications over the real wire protocols, driven by the real clients.

Slack (slack-sdk ``AsyncWebClient``) against tests/standins/slack_server.py,
PagerDuty Events v2 and a WeCom robot (aiohttp) against
tests/standins/pagerduty_server.py, e-mail (the standard library's ``smtplib``)
against a real SMTP server (aiosmtpd). The notifier's outbox is driven as the
agent drives it, with the table and changelog replaced by a dict.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from sre_agent.config import load_settings
from sre_agent.processors.notifications import (
    IncidentIn,
    NotifyState,
    RcaIn,
    Rules,
    Tick,
    TriageIn,
    begin,
    decide,
)
from sre_agent.schemas import Hypothesis, Incident, RcaResult, TriageEvent
from sre_agent.sinks.channels import Channels
from sre_agent.sinks.slack import SlackApprovals
from sre_agent.streams.notify_agent import Outbox
from tests.standins.pagerduty_server import PagerDutyStandin, WeComStandin
from tests.standins.slack_server import SlackStandin
from tests.standins.smtp_server import SmtpStandin

pytestmark = pytest.mark.integration

T = datetime(2025, 11, 13, 3, 0, tzinfo=UTC)
SECRET = "hunter2-Zq8"
AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def incident(status: str = "open", rev: int = 1, sev: str = "critical",
             services: tuple[str, ...] = ("checkout",)) -> Incident:
    return Incident(
        incident_id="inc-n1", title=f"checkout: errors up, db login password={SECRET}",
        fingerprint="f", opened_at=T, time=T, severity=sev, status=status,  # type: ignore[arg-type]
        revision=rev, services=list(services), root_service="checkout",
        labels={"namespace": "prod", "team": "payments"},
        severity_reasons=["evidence 0.99 (anomaly http_error_ratio on checkout)",
                          f"leaked key={AWS}"],
        resolved_at=T if status == "resolved" else None,
        resolved_by="api:otto" if status == "resolved" else None)


class Harness:
    """The agent's outbox, with the table as a dict and audit records in a list."""

    def __init__(self, channels: Channels, rules: Rules) -> None:
        self.channels, self.rules = channels, rules
        self.table: dict[str, bytes] = {}
        self.audit: list[tuple[str, dict[str, Any]]] = []
        self.outbox = Outbox(channels, rules, self.save, self.flush, self.record)

    def save(self, st: NotifyState) -> None:
        self.table[st.incident_id] = st.model_dump_json().encode()

    async def flush(self) -> None:
        return None

    async def record(self, action: str, subject: str, details: dict[str, Any],
                     key: str | None) -> None:
        self.audit.append((action, details))

    def state(self) -> NotifyState | None:
        raw = self.table.get("inc-n1")
        return NotifyState.model_validate_json(raw) if raw else None

    async def feed(self, ev: Any, now: float | None = None) -> list[tuple[str, str]]:
        st, sends = decide(self.state(), ev, time.time() if now is None else now, self.rules)
        if st is None:
            return []
        for s in sends:
            await self.outbox.deliver(st, s)
        self.save(st)
        return [(s.sink, s.msg.event) for s in sends]


@pytest.fixture
async def standins() -> Any:
    slack, pd, wecom = SlackStandin(), PagerDutyStandin(), WeComStandin()
    await slack.start()
    await pd.start()
    await wecom.start()
    with SmtpStandin() as smtp:
        yield slack, pd, wecom, smtp
    for s in (slack, pd, wecom):
        await s.stop()


def settings_for(slack: SlackStandin, pd: PagerDutyStandin, wecom: WeComStandin,
                 smtp: SmtpStandin, escalate_after: float = 0.0) -> Any:
    sinks = [
        {"slack_sink": {"name": "oncall", "slack_channel": "#oncall"}},
        {"slack_sink": {"name": "payments", "slack_channel": "#payments",
                        "scope": {"include": [{"labels": {"team": "pay*"}}]}}},
        {"slack_sink": {"name": "search", "slack_channel": "#search",
                        "scope": {"include": [{"service": "search*"}]}}},
        {"type": "pagerduty", "name": "pd", "secret": "pd", "url": pd.url,
         "escalate_after": escalate_after, "scope": {"include": [{"severity": "critical"}]}},
        {"type": "wecom", "name": "wecom", "secret": "wecom"},
        {"type": "email", "name": "mail", "smtp_host": smtp.host, "smtp_port": smtp.port,
         "to": ["oncall@example.com"], "from_addr": "sre-agent@example.com"},
    ]
    return load_settings(env={
        "SRE_AGENT_SLACK__BOT_TOKEN": slack.token,
        "SRE_AGENT_SLACK__BASE_URL": slack.base_url,
        "SRE_AGENT_SLACK__MAX_RETRIES": "0",
        "SRE_AGENT_NOTIFY__SINKS": orjson.dumps(sinks).decode(),
        "SRE_AGENT_NOTIFY__SECRETS": orjson.dumps({"pd": pd.routing_key,
                                                   "wecom": wecom.url}).decode(),
        "SRE_AGENT_NOTIFY__CONSOLE_URL": "http://agent:6066/console#/incident/{incident_id}",
    })


def build(settings: Any) -> tuple[Channels, Rules]:
    approvals = SlackApprovals.from_settings(settings.slack)
    assert approvals is not None
    channels = Channels.from_settings(settings, approvals.client)
    return channels, Rules(sinks=channels.sinks, console_url=settings.notify.console_url)


def everything_sent(slack: SlackStandin, pd: PagerDutyStandin, wecom: WeComStandin,
                    smtp: SmtpStandin) -> str:
    return orjson.dumps([slack.calls, pd.events, wecom.messages]).decode() + "".join(
        m.as_string() for m in smtp.messages)


async def test_incident_lifecycle_reaches_every_routed_sink_redacted(standins: Any) -> None:
    slack, pd, wecom, smtp = standins
    h = Harness(*build(settings_for(slack, pd, wecom, smtp)))

    out = await h.feed(IncidentIn(incident()))
    assert sorted(out) == [("mail", "open"), ("oncall", "open"), ("payments", "open"),
                           ("pd", "open"), ("wecom", "open")]
    parents = {m["requested_channel"]: m for m in slack.messages.values()}
    assert set(parents) == {"#oncall", "#payments"}  # #search is not in scope
    assert parents["#oncall"]["metadata"]["event_payload"]["key"] == "inc-n1#0:oncall:open"
    assert pd.alerts["inc-n1#0"]["status"] == "triggered"
    assert "**[CRITICAL] checkout: errors up" in wecom.contents()[0]
    mail = smtp.messages[0]
    assert mail["Subject"].startswith("[CRITICAL] checkout: errors up")
    assert "console: http://agent:6066/console#/incident/inc-n1" in mail.get_content()

    rca = RcaResult(incident_id="inc-n1", hypotheses=[Hypothesis(
        cause_type="db_pool_exhaustion", service="checkout", confidence=0.7, summary="pool")])
    assert sorted(await h.feed(RcaIn(rca))) == [("oncall", "update"), ("payments", "update")]
    ack = TriageEvent(incident_id="inc-n1", action="ack", actor="slack:U-ONCALL", comment="mine")
    await h.feed(TriageIn(ack))
    assert pd.alerts["inc-n1#0"]["status"] == "acknowledged"
    await h.feed(IncidentIn(incident(status="resolved", rev=2)))
    assert pd.alerts["inc-n1#0"]["status"] == "resolved"

    oncall_ts = parents["#oncall"]["ts"]
    replies = slack.thread(oncall_ts)
    assert [r["text"].split(":")[0] for r in replies] == ["*updated*", "*acknowledged*",
                                                          "*resolved*"]
    assert "likely cause: db_pool_exhaustion on checkout (70%)" in replies[0]["text"]
    assert "acknowledged by slack:U-ONCALL: mine" in replies[1]["text"]
    assert replies[2]["reply_broadcast"] and "resolved by api:otto" in replies[2]["text"]
    header = slack.messages[oncall_ts]["blocks"][1]["fields"][1]["text"]
    assert header == "*State*\nRESOLVED"  # the parent shows the current state
    resolved_mail = smtp.messages[-1]
    assert resolved_mail["In-Reply-To"] == mail["Message-ID"]
    assert "resolved by api:otto" in resolved_mail.get_content()
    assert len(wecom.messages) == 2 and "(resolved)" in wecom.contents()[1]

    sent = [d for a, d in h.audit if a == "notify.sent"]
    assert len(sent) == len({d["key"] for d in sent}) == 15
    wire = everything_sent(slack, pd, wecom, smtp)
    assert SECRET not in wire and AWS not in wire and "<redacted" in wire


async def test_escalation_only_when_nobody_acknowledges(standins: Any) -> None:
    slack, pd, wecom, smtp = standins
    h = Harness(*build(settings_for(slack, pd, wecom, smtp, escalate_after=600)))
    now = time.time()
    await h.feed(IncidentIn(incident()), now)
    assert pd.events == []
    assert await h.feed(Tick(), now + 599) == []
    assert ("pd", "escalate") in await h.feed(Tick(), now + 601)
    assert pd.actions() == [("trigger", "inc-n1#0")]
    assert pd.events[0]["payload"]["custom_details"]["incident_id"] == "inc-n1"


async def test_a_send_in_doubt_after_a_crash_is_not_posted_twice(standins: Any) -> None:
    slack, pd, wecom, smtp = standins
    settings = settings_for(slack, pd, wecom, smtp)
    channels, rules = build(settings)
    dead = Harness(channels, rules)
    st, sends = decide(None, IncidentIn(incident()), time.time(), rules)
    oncall = next(s for s in sends if s.sink == "oncall")
    assert begin(st, oncall, time.time())  # pending saved and flushed ...
    dead.save(st)
    await channels.channels["oncall"].add(oncall.msg, {})  # ... posted, then the worker died
    assert len(slack.posted()) == 1

    heir = Harness(channels, rules)  # the worker taking the partition over
    heir.table = dict(dead.table)
    await heir.feed(IncidentIn(incident()))  # the unfinished event, redelivered
    parents = [m for m in slack.messages.values() if m["requested_channel"] == "#oncall"]
    assert len(parents) == 1, "the in-doubt post was looked up, not posted again"
    assert ("notify.reconciled", "inc-n1#0:oncall:open") in [
        (a, d["key"]) for a, d in heir.audit]
    assert heir.state().sinks["oncall"].thread["ts"] == parents[0]["ts"]
    # later updates go into that thread
    await heir.feed(IncidentIn(incident(rev=2, services=("checkout", "db"))))
    assert len(slack.thread(parents[0]["ts"])) == 1


async def test_an_outage_is_retried_with_backoff_and_audited(standins: Any) -> None:
    slack, pd, wecom, smtp = standins
    h = Harness(*build(settings_for(slack, pd, wecom, smtp)))
    pd.fail_next = 1
    now = time.time()
    await h.feed(IncidentIn(incident()), now)
    assert pd.events == []
    failed = [d for a, d in h.audit if a == "notify.failed"]
    assert failed and failed[0]["sink"] == "pd" and "500" in failed[0]["error"]
    assert await h.feed(Tick(), now + 10) == []  # not due yet
    assert await h.feed(Tick(), now + 31) == [("pd", "open")]
    assert pd.alerts["inc-n1#0"]["triggers"] == 1
