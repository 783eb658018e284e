"""Incident notification channels: Slack threads, WeCom robot, PagerDuty, e-mail.

One :class:`Channel` per configured sink (``notify.sinks``, see
:mod:`sre_agent.processors.notifications` for who is told what). Each renders a
:class:`~sre_agent.processors.notifications.Msg` for its wire, after the one
redaction (:func:`~sre_agent.processors.redact.scrub_model`, i.e. ``redact``),
and sends it with the real client:

* Slack: slack-sdk's ``AsyncWebClient`` (the approvals' client, one bot token):
  the incident's parent message, then replies in its thread, the parent updated
  to the current state; Slack message metadata carries the idempotency key, so
  a send in doubt after a crash is looked up in the channel (or thread) first;
* WeCom group robot: its webhook (markdown message; ``errcode`` checked);
* PagerDuty Events API v2: ``trigger`` / ``acknowledge`` / ``resolve`` with a
  dedup key per incident and cycle (PagerDuty itself deduplicates);
* e-mail: SMTP with the standard library's ``smtplib`` (STARTTLS or TLS, login),
  a Message-ID derived from the idempotency key and the resolution threaded
  under the opening mail (``In-Reply-To``).

Examples
--------
>>> from sre_agent.processors.notifications import Msg
>>> m = Msg(incident_id="i1", event="open", key="i1#0:pd:open", dedup_key="i1#0",
...         title="api: latency up", severity="critical", status="open", services=["api"],
...         reasons=["evidence 0.99"], url="http://agent/console#/incident/i1")
>>> body = pagerduty_body(m, "rk")
>>> body["event_action"], body["dedup_key"], body["payload"]["severity"], body["links"][0]["href"]
('trigger', 'i1#0', 'critical', 'http://agent/console#/incident/i1')
>>> wecom_markdown(m).splitlines()[0]
'**[CRITICAL] api: latency up** (opened)'
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any, Protocol

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from ..config import NotifySink, Settings
from ..processors.notifications import Msg
from ..processors.redact import scrub_model
from .breakers import Guard, breaker_health

__all__ = ["Channel", "Channels", "EmailChannel", "PagerDutyChannel", "SlackChannel",
           "WeComChannel", "default_sinks", "incident_blocks", "pagerduty_body",
           "wecom_markdown"]

log = logging.getLogger(__name__)

#: Slack message-metadata event type of incident messages (payload: incident id, key)
INCIDENT_EVENT = "sre_agent_incident"
_VERB = {"open": "opened", "escalate": "ESCALATED (not acknowledged)", "reopen": "reopened",
         "update": "updated", "resolve": "resolved", "ack": "acknowledged",
         "unack": "unacknowledged", "assign": "assigned", "snooze": "snoozed",
         "comment": "comment"}
_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


class SendError(RuntimeError):
    """A channel refused or failed a message (the reason is kept for the retry/audit)."""


class Channel(Protocol):
    name: str
    type: str
    guard: Guard

    async def add(self, msg: Msg, thread: Mapping[str, str]) -> dict[str, str]:
        """Send; return the thread (Slack) to remember, else ``{}``."""

    async def find(self, msg: Msg, thread: Mapping[str, str],
                   oldest: float) -> dict[str, str] | None:
        """Whether a send in doubt landed (its thread), None when not or unknown."""

    async def close(self) -> None: ...


# ---------------------------------------------------------------------- rendering
def _t(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def headline(m: Msg) -> str:
    return f"[{m.severity.upper()}] {m.title}"


def _when(m: Msg) -> str:
    if m.opened_at is None:
        return ""
    out = f"opened {m.opened_at:%Y-%m-%d %H:%M:%S} UTC"
    if m.resolved_at is not None:
        mins = max(0.0, (m.resolved_at - m.opened_at).total_seconds()) / 60
        out += f", resolved {m.resolved_at:%H:%M:%S} UTC after {mins:.0f} min"
    return out


def describe(m: Msg) -> list[str]:
    """Plain lines every channel shows (who, what, why, where to look)."""
    lines = []
    if m.event in ("ack", "unack", "assign", "snooze", "comment"):
        what = _VERB[m.event] + (f" to {m.assignee}" if m.event == "assign" and m.assignee else "")
        lines.append(f"{what} by {m.actor}" + (f": {m.comment}" if m.comment else ""))
    if m.event == "resolve":
        lines.append("resolved" + (f" by {m.resolved_by}" if m.resolved_by else
                                   " (signals recovered)"))
    lines.append(f"services: {', '.join(m.services) or '?'}"
                 + (f" (root: {m.root_service})" if m.root_service else ""))
    if m.cause:
        lines.append(f"likely cause: {m.cause}")
    if m.reasons:
        lines.append("severity: " + "; ".join(m.reasons[:3]))
    if m.acked_by and m.event not in ("ack",):
        lines.append(f"acknowledged by {m.acked_by}")
    when = _when(m)
    if when:
        lines.append(when)
    if m.url:
        lines.append(f"console: {m.url}")
    return lines


def incident_blocks(m: Msg) -> list[dict[str, Any]]:
    """Block Kit of the incident's parent message, showing its current state."""
    state = "RESOLVED" if m.status == "resolved" else (
        f"ACKNOWLEDGED by {m.acked_by}" if m.acked_by else "OPEN")
    fields = [{"type": "mrkdwn", "text": f"*Severity*\n{m.severity}"},
              {"type": "mrkdwn", "text": f"*State*\n{state}"},
              {"type": "mrkdwn", "text": f"*Services*\n{', '.join(m.services) or '?'}"},
              {"type": "mrkdwn", "text": f"*Incident*\n`{m.incident_id}`"}]
    if m.assignee:
        fields.append({"type": "mrkdwn", "text": f"*Assignee*\n{m.assignee}"})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _t(headline(m), 150)}},
        {"type": "section", "fields": fields[:10]}]
    body = [f"*Likely cause*: {m.cause}"] if m.cause else []
    if m.reasons:
        body.append("*Why this severity*: " + "; ".join(m.reasons[:3]))
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _t("\n".join(body), 2900)}})
    ctx = [_when(m)] + ([f"<{m.url}|open in the console>"] if m.url else [])
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _t(" · ".join(x for x in ctx if x) or m.incident_id, 1000)}]})
    return blocks


def wecom_markdown(m: Msg) -> str:
    text = f"**{headline(m)}** ({_VERB[m.event]})\n" + "\n".join(f"> {ln}" for ln in describe(m))
    return text.encode("utf-8")[:4000].decode("utf-8", "ignore")


def pagerduty_body(m: Msg, routing_key: str) -> dict[str, Any]:
    action = {"ack": "acknowledge", "resolve": "resolve"}.get(m.event, "trigger")
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                            "dedup_key": m.dedup_key}
    if action == "trigger":
        body["payload"] = {
            "summary": _t(headline(m), 1024), "source": m.root_service or "sre-agent",
            "severity": _PD_SEVERITY.get(m.severity, "warning"), "component": m.root_service,
            "class": m.cause.split(" ")[0] if m.cause else None,
            "custom_details": {"incident_id": m.incident_id, "services": m.services,
                               "severity_reasons": m.reasons, "likely_cause": m.cause,
                               "labels": m.labels}}
        body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
        if m.url:
            body["links"] = [{"href": m.url, "text": "SRE Agent console"}]
    return body


def _message_id(key: str) -> str:
    return f"<{hashlib.sha1(key.encode()).hexdigest()}@sre-agent>"  # noqa: S324 - an id, not security


def email_message(m: Msg, sender: str, to: list[str]) -> EmailMessage:
    em = EmailMessage()
    em["Subject"] = _t(f"{headline(m)} — {_VERB[m.event]}", 250)
    em["From"] = sender
    em["To"] = ", ".join(to)
    em["Message-ID"] = _message_id(m.key)
    opening = m.key.rsplit(":", 1)[0] + ":open" if m.event == "resolve" else None
    if opening:
        em["In-Reply-To"] = em["References"] = _message_id(opening)
    em["X-SRE-Agent-Incident"] = m.incident_id
    em.set_content("\n".join([headline(m), "", *describe(m)]) + "\n")
    return em


# ---------------------------------------------------------------------- channels
class SlackChannel:
    type = "slack"

    def __init__(self, name: str, client: AsyncWebClient, channel: str, guard: Guard) -> None:
        self.name, self.client, self.channel, self.guard = name, client, channel, guard

    async def add(self, msg: Msg, thread: Mapping[str, str]) -> dict[str, str]:
        m = scrub_model(msg)
        meta = {"event_type": INCIDENT_EVENT,
                "event_payload": {"incident_id": m.incident_id, "key": m.key}}
        if m.event in ("open", "escalate") or not thread.get("ts"):
            resp = await self.guard(self.client.chat_postMessage, channel=self.channel,
                                    blocks=incident_blocks(m), text=_t(headline(m), 3000),
                                    metadata=meta)
            return {"channel": str(resp["channel"]), "ts": str(resp["ts"])}
        text = f"*{_VERB[m.event]}*: " + "\n".join(describe(m))
        await self.guard(self.client.chat_postMessage, channel=thread["channel"],
                         thread_ts=thread["ts"], text=_t(text, 3000), metadata=meta,
                         reply_broadcast=m.event in ("resolve", "reopen"))
        try:  # the parent shows the current state; best effort
            await self.client.chat_update(channel=thread["channel"], ts=thread["ts"],
                                          blocks=incident_blocks(m), text=_t(headline(m), 3000))
        except Exception as exc:  # noqa: BLE001 - the reply is what matters
            log.warning("slack update of incident %s failed: %s", m.incident_id, exc)
        return dict(thread)

    async def find(self, msg: Msg, thread: Mapping[str, str],
                   oldest: float) -> dict[str, str] | None:
        in_thread = bool(thread.get("ts")) and msg.event not in ("open", "escalate")
        channel = thread.get("channel") or self.channel
        cursor = None
        for _ in range(5):
            if in_thread:
                resp = await self.guard(self.client.conversations_replies, channel=channel,
                                        ts=thread["ts"], include_all_metadata=True, limit=200,
                                        cursor=cursor)
            else:
                resp = await self.guard(self.client.conversations_history, channel=channel,
                                        oldest=f"{oldest:.6f}", include_all_metadata=True,
                                        limit=200, cursor=cursor)
            for found in resp.get("messages") or []:
                meta = found.get("metadata") or {}
                if meta.get("event_type") == INCIDENT_EVENT and \
                        (meta.get("event_payload") or {}).get("key") == msg.key:
                    return dict(thread) if in_thread else {"channel": channel,
                                                           "ts": str(found["ts"])}
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                return None
        return None

    async def close(self) -> None:
        return None


class _Http:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: dict[str, Any]) -> str:
        try:
            async with self.session().post(url, json=body) as r:
                text = await r.text()
                if r.status >= 300:
                    raise SendError(f"HTTP {r.status}: {text[:200]}")
                return text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from None


class WeComChannel(_Http):
    type = "wecom"

    def __init__(self, name: str, url: str, timeout: float, guard: Guard) -> None:
        super().__init__(timeout)
        self.name, self.url, self.guard = name, url, guard

    async def add(self, msg: Msg, thread: Mapping[str, str]) -> dict[str, str]:
        body = {"msgtype": "markdown", "markdown": {"content": wecom_markdown(scrub_model(msg))}}
        text = await self.guard(self.post, self.url, body)
        if '"errcode":0' not in text.replace(" ", ""):  # HTTP 200 with an error code
            raise SendError(f"WeCom refused the message: {text[:200]}")
        return {}

    async def find(self, msg: Msg, thread: Mapping[str, str], oldest: float) -> None:
        return None


class PagerDutyChannel(_Http):
    type = "pagerduty"

    def __init__(self, name: str, url: str, routing_key: str, timeout: float, guard: Guard) -> None:
        super().__init__(timeout)
        self.name, self.url, self.routing_key, self.guard = name, url, routing_key, guard

    async def add(self, msg: Msg, thread: Mapping[str, str]) -> dict[str, str]:
        if msg.event not in ("open", "escalate", "reopen", "ack", "resolve"):
            return {}
        await self.guard(self.post, self.url, pagerduty_body(scrub_model(msg), self.routing_key))
        return {}

    async def find(self, msg: Msg, thread: Mapping[str, str], oldest: float) -> None:
        return None  # resending is safe: PagerDuty deduplicates by dedup_key


class EmailChannel:
    type = "email"

    def __init__(self, name: str, sink: NotifySink, password: str | None, timeout: float,
                 guard: Guard) -> None:
        self.name, self.sink, self.password, self.timeout, self.guard = (
            name, sink, password, timeout, guard)

    def _send(self, em: EmailMessage) -> None:
        s = self.sink
        assert s.smtp_host is not None
        cls = smtplib.SMTP_SSL if s.smtp_ssl else smtplib.SMTP
        with cls(s.smtp_host, s.smtp_port, timeout=self.timeout) as smtp:
            if s.smtp_starttls and not s.smtp_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user and self.password:
                smtp.login(s.smtp_user, self.password)
            smtp.send_message(em)

    async def _deliver(self, em: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._send, em)
        except (smtplib.SMTPException, OSError) as exc:
            raise SendError(f"SMTP: {type(exc).__name__}: {exc}") from None

    async def add(self, msg: Msg, thread: Mapping[str, str]) -> dict[str, str]:
        if msg.event not in ("open", "escalate", "reopen", "resolve"):
            return {}
        em = email_message(scrub_model(msg), self.sink.from_addr, list(self.sink.to))
        await self.guard(self._deliver, em)
        return {}

    async def find(self, msg: Msg, thread: Mapping[str, str], oldest: float) -> None:
        return None

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------- the set
def default_sinks(settings: Settings) -> list[NotifySink]:
    """``notify.sinks`` when given; else one sink per configured channel: Slack
    (``slack.channel``, every incident), WeCom (every incident) and PagerDuty
    (critical incidents) from the older single-channel settings."""
    n = settings.notify
    if n.sinks:
        return list(n.sinks)
    out = []
    if settings.slack.bot_token is not None:
        out.append(NotifySink(name="slack", type="slack", channel=settings.slack.channel))
    if n.wecom_webhook_url is not None:
        out.append(NotifySink(name="wecom", type="wecom", secret="__wecom_webhook_url"))
    if n.pagerduty_routing_key is not None:
        out.append(NotifySink(name="pagerduty", type="pagerduty", url=n.pagerduty_url,
                              secret="__pagerduty_routing_key",
                              scope={"include": [{"severity": ["critical"]}]}))  # type: ignore[arg-type]
    return out


class Channels:
    """Every incident channel, built once by :class:`~sre_agent.streams.services.Services`."""

    def __init__(self, sinks: list[NotifySink], channels: dict[str, Channel]) -> None:
        self.sinks = sinks
        self.channels = channels

    @classmethod
    def from_settings(cls, settings: Settings, slack: AsyncWebClient | None) -> Channels:
        n = settings.notify
        secrets = {k: v.get_secret_value() for k, v in n.secrets.items()}
        if n.wecom_webhook_url is not None:
            secrets["__wecom_webhook_url"] = n.wecom_webhook_url.get_secret_value()
        if n.pagerduty_routing_key is not None:
            secrets["__pagerduty_routing_key"] = n.pagerduty_routing_key.get_secret_value()
        sinks = default_sinks(settings)
        channels: dict[str, Channel] = {}
        s = settings.slack
        for sink in sinks:
            guard = Guard(f"notify:{sink.name}", s.breaker_failures, s.breaker_reset_seconds)
            secret = secrets.get(sink.secret) if sink.secret else None
            if sink.type == "slack":
                if slack is None:
                    log.warning("notification sink %s is Slack, but slack.bot_token is not set: "
                                "it is skipped", sink.name)
                    continue
                channels[sink.name] = SlackChannel(sink.name, slack, sink.channel or s.channel, guard)
            elif sink.type == "wecom":
                channels[sink.name] = WeComChannel(sink.name, secret or "", n.timeout, guard)
            elif sink.type == "pagerduty":
                channels[sink.name] = PagerDutyChannel(sink.name, sink.url, secret or "",
                                                       n.timeout, guard)
            else:
                channels[sink.name] = EmailChannel(sink.name, sink, secret, n.timeout, guard)
        return cls([x for x in sinks if x.name in channels], channels)

    def health(self) -> dict[str, Any]:
        per = {name: breaker_health(c.guard) for name, c in self.channels.items()}
        return {"ok": all(h["ok"] for h in per.values()), "sinks": per}

    async def close(self) -> None:
        for c in self.channels.values():
            try:
                await c.close()
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                log.warning("closing notification sink %s failed: %s", c.name, exc)
