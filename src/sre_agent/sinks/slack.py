"""Slack: approval requests as Block Kit messages, and verified interaction callbacks.

Posting uses slack-sdk's :class:`~slack_sdk.web.async_client.AsyncWebClient`
(``base_url`` from settings, so tests point it at a local server speaking the Web
API). The message carries the cause, an evidence summary, the plan, the risk and
similar past cases, with Approve/Reject buttons whose ``value`` is the plan id.

Callbacks from the buttons are checked with slack-sdk's
:class:`~slack_sdk.signature.SignatureVerifier` (HMAC of ``v0:timestamp:body``
with the signing secret; older than 5 minutes is stale) before anything is read.

Examples
--------
>>> from sre_agent.schemas import ActionPlan
>>> plan = ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.46, risk_tier="MEDIUM",
...                   policy="ONE_APPROVAL", cause_type="bad_deploy", service="checkout")
>>> blocks = plan_blocks(plan)
>>> [b["type"] for b in blocks][-2:], blocks[-2]["elements"][0]["value"]
(['actions', 'context'], 'p1')
>>> parse_interaction(b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A"
...     b"%22U1%22%7D%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22sre_plan_approve%22%2C"
...     b"%22value%22%3A%22p1%22%7D%5D%7D")
{'user_id': 'U1', 'user_name': '', 'decision': 'approve', 'plan_id': 'p1'}
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from ..config import SlackSettings
from ..processors.redact import redact_secrets, scrub_model
from ..schemas import ActionPlan
from .breakers import Guard

__all__ = ["APPROVE_ID", "REJECT_ID", "InteractionError", "SlackApprovals", "check_signature",
           "parse_interaction", "plan_blocks"]

log = logging.getLogger(__name__)

APPROVE_ID = "sre_plan_approve"
REJECT_ID = "sre_plan_reject"
MAX_AGE = 300  # seconds; Slack's own recommendation (and SignatureVerifier's)
_TS = re.compile(r"[0-9]{1,12}")
_SIG = re.compile(r"v0=[0-9a-f]{64}")


class InteractionError(ValueError):
    """A callback that is not an approval button press we understand."""


def _t(text: str, limit: int = 2900) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plan_blocks(plan: ActionPlan, status: str | None = None) -> list[dict[str, Any]]:
    """Block Kit for ``plan``; buttons only while it is pending approval."""
    status = status or plan.status
    verb = "Approval required" if status == "pending" else f"Plan {status.upper()}"
    first = plan.steps[0] if plan.steps else None
    what = f"{first.action} on {first.target.ref()}" if first else "diagnosis only"
    conf = f" (confidence {plan.confidence:.0%})" if plan.confidence is not None else ""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _t(f"{verb}: {what}", 150)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Cause*\n{plan.cause_type or '?'} on {plan.service or '?'}{conf}"},
            {"type": "mrkdwn", "text": f"*Risk*\n{plan.risk_score:.2f} {plan.risk_tier} → {plan.policy}"},
            {"type": "mrkdwn", "text": f"*Severity*\n{plan.severity}"},
            {"type": "mrkdwn", "text": f"*Incident / plan*\n{plan.incident_id} / `{plan.plan_id}`"},
        ]},
    ]
    if plan.summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _t(plan.summary)}})
    if plan.evidence:
        ev = "\n".join(f"• {e}" for e in plan.evidence[:5])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _t(f"*Evidence*\n{ev}")}})
    if plan.steps:
        st = "\n".join(f"{i + 1}. `{s.action}` {s.target.ref()} (risk {s.risk:.2f})"
                       + (f" — verify {s.verify.get('check')} {s.verify.get('metric') or ''}".rstrip()
                          if s.verify else "")
                       for i, s in enumerate(plan.steps))
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": _t(f"*Plan* ({plan.playbook})\n{st}")}})
    if plan.similar:
        sim = "\n".join(f"• {c.get('title')} — {float(c.get('similarity', 0)):.0%} similar"
                        + (f", fixed by: {c['resolution']}" if c.get("resolution") else "")
                        for c in plan.similar[:3])
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": _t(f"*Similar past cases*\n{sim}")}})
    if status == "pending":
        blocks.append({"type": "actions", "block_id": f"plan:{plan.plan_id}", "elements": [
            {"type": "button", "action_id": APPROVE_ID, "style": "primary", "value": plan.plan_id,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": REJECT_ID, "style": "danger", "value": plan.plan_id,
             "text": {"type": "plain_text", "text": "Reject"}},
        ]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _t(plan.policy_reason or plan.policy, 1000)}]})
    return blocks


def check_signature(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str],
                    now: float | None = None) -> str | None:
    """None if the request is signed by Slack, else why not (missing, stale, bad)."""
    h = {k.lower(): v for k, v in headers.items()}
    ts, sig = h.get("x-slack-request-timestamp"), h.get("x-slack-signature")
    if not ts or not sig:
        return "missing signature headers"
    # ASCII only: int() takes other scripts' digits, hmac refuses non-ASCII text
    if not _TS.fullmatch(ts):
        return "bad timestamp"
    if not _SIG.fullmatch(sig):
        return "malformed signature"
    age = abs((time.time() if now is None else now) - int(ts))
    if age > MAX_AGE:
        return f"stale timestamp ({int(age)} s old)"
    try:  # Slack sends UTF-8; the verifier decodes the body and would raise on anything else
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    if not verifier.is_valid(body=body, timestamp=ts, signature=sig):
        return "signature mismatch"
    return None


def parse_interaction(body: bytes) -> dict[str, str]:
    """The approval decision in a ``block_actions`` callback body (form-encoded)."""
    form = parse_qs(body.decode("utf-8", "replace"))
    raw = (form.get("payload") or [""])[0]
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InteractionError("payload is not JSON") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise InteractionError("not a block_actions payload")
    user = payload.get("user") or {}
    for action in payload.get("actions") or []:
        aid = action.get("action_id")
        if aid in (APPROVE_ID, REJECT_ID) and action.get("value"):
            return {"user_id": str(user.get("id", "")),
                    "user_name": str(user.get("username") or user.get("name") or ""),
                    "decision": "approve" if aid == APPROVE_ID else "reject",
                    "plan_id": str(action["value"])}
    raise InteractionError("no approve/reject action in payload")


#: Slack message-metadata event type of an approval request
PLAN_EVENT = "sre_agent_plan"
#: history pages (200 messages each) searched for a lost post's outcome
FIND_PAGES = 5


class SlackApprovals:
    """Posts and updates approval requests in the configured channel."""

    def __init__(self, client: AsyncWebClient, channel: str, guard: Guard | None = None) -> None:
        self.client = client
        self.channel = channel
        #: circuit breaker of the posts (updates are best effort and not counted)
        self.guard = guard or Guard("slack", 3, 60.0)
        #: the channel's id as Slack answered a post (history needs an id, not a #name)
        self.channel_id: str | None = channel if channel[:1] in ("C", "G") else None

    @classmethod
    def from_settings(cls, s: SlackSettings) -> SlackApprovals | None:
        if s.bot_token is None:
            return None
        base = s.base_url if s.base_url.endswith("/") else s.base_url + "/"
        n = s.max_retries
        retries = [AsyncConnectionErrorRetryHandler(max_retry_count=n),
                   AsyncRateLimitErrorRetryHandler(max_retry_count=n),
                   AsyncServerErrorRetryHandler(max_retry_count=n)] if n else []
        client = AsyncWebClient(token=s.bot_token.get_secret_value(), base_url=base,
                                timeout=int(max(1, round(s.timeout))), retry_handlers=retries)
        return cls(client, s.channel, Guard("slack", s.breaker_failures, s.breaker_reset_seconds))

    async def post(self, plan: ActionPlan) -> dict[str, str]:
        """Post the request; return ``{"channel", "ts"}`` for later updates.

        The message carries Slack message metadata (``sre_agent_plan`` with the plan
        id), so :meth:`find` can tell whether a post whose outcome was lost happened.
        """
        plan = scrub_model(plan)
        resp = await self.guard(
            self.client.chat_postMessage,
            channel=self.channel, blocks=plan_blocks(plan),
            text=f"[{plan.risk_tier}] {plan.policy} for {plan.cause_type} on {plan.service}: "
                 f"plan {plan.plan_id}",
            metadata={"event_type": PLAN_EVENT, "event_payload": {"plan_id": plan.plan_id}})
        self.channel_id = str(resp["channel"])
        return {"channel": str(resp["channel"]), "ts": str(resp["ts"])}

    async def find(self, plan_id: str, oldest: float) -> dict[str, str] | None:
        """The request already posted for ``plan_id`` since ``oldest`` (unix time), if any.

        Reads the channel history (scope ``channels:history``/``groups:history``) with
        metadata, newest first, at most :data:`FIND_PAGES` pages. The history needs the
        channel's id: configure ``slack.channel`` as an id (``C…``), else the lookup
        works once this worker has posted (and learned the id) and fails before.
        """
        channel = self.channel_id or self.channel
        cursor = None
        for _ in range(FIND_PAGES):
            resp = await self.guard(
                self.client.conversations_history,
                channel=channel, oldest=f"{oldest:.6f}", include_all_metadata=True,
                limit=200, cursor=cursor)
            for msg in resp.get("messages") or []:
                meta = msg.get("metadata") or {}
                if (meta.get("event_type") == PLAN_EVENT
                        and (meta.get("event_payload") or {}).get("plan_id") == plan_id):
                    return {"channel": channel, "ts": str(msg["ts"])}
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                return None
        return None

    async def update(self, where: Mapping[str, str], plan: ActionPlan, status: str,
                     note: str = "") -> None:
        plan, note = scrub_model(plan), redact_secrets(note)
        blocks = plan_blocks(plan, status=status)
        if note:
            blocks.insert(-1, {"type": "section", "text": {"type": "mrkdwn", "text": _t(note)}})
        await self.client.chat_update(channel=where["channel"], ts=where["ts"], blocks=blocks,
                                      text=f"plan {plan.plan_id}: {status}")
