"""Notifications beyond Slack: WeCom (企业微信) group robot and PagerDuty Events v2.

Both are plain HTTPS webhooks posted with aiohttp; each is enabled by its secret
(``notify.wecom_webhook_url``, ``notify.pagerduty_routing_key``, env only). A
failing endpoint is logged and reported, never raised into the stream.

Examples
--------
>>> n = Notice(title="Plan BLOCKED", text="wallet-service: diagnosis only", severity="critical",
...            dedup_key="plan-1")
>>> wecom_body(n)["markdown"]["content"].splitlines()[0]
'**Plan BLOCKED**'
>>> b = pagerduty_body(n, "rk")
>>> b["event_action"], b["payload"]["severity"], b["dedup_key"]
('trigger', 'critical', 'plan-1')
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..config import NotifySettings
from ..processors.redact import redact_secrets, scrub_event

__all__ = ["Notice", "Notifier", "pagerduty_body", "wecom_body"]

log = logging.getLogger(__name__)

_PD_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    severity: str = "warning"
    #: PagerDuty dedup key (plan or incident id): a later ``resolve`` closes the alert
    dedup_key: str = ""
    resolve: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def wecom_body(n: Notice) -> dict[str, Any]:
    """WeCom group-robot markdown message (content limit 4096 bytes)."""
    content = f"**{n.title}**\n{n.text}"
    raw = content.encode("utf-8")[:4000].decode("utf-8", "ignore")
    return {"msgtype": "markdown", "markdown": {"content": raw}}


def pagerduty_body(n: Notice, routing_key: str) -> dict[str, Any]:
    """PagerDuty Events API v2 trigger/resolve event."""
    body: dict[str, Any] = {"routing_key": routing_key,
                            "event_action": "resolve" if n.resolve else "trigger"}
    if n.dedup_key:
        body["dedup_key"] = n.dedup_key
    if not n.resolve:
        body["payload"] = {"summary": f"{n.title}: {n.text}"[:1024], "source": "sre-agent",
                           "severity": _PD_SEVERITY.get(n.severity, "warning"),
                           "custom_details": n.details}
    return body


class Notifier:
    """Sends :class:`Notice` objects to every configured channel."""

    def __init__(self, settings: NotifySettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._own = session is None
        #: last error per channel (None when the last send worked)
        self.errors: dict[str, str | None] = {}

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.wecom_webhook_url is not None or s.pagerduty_routing_key is not None

    async def setup(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout))

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def add(self, notice: Notice) -> dict[str, bool]:
        """Send to every channel; return ``{channel: delivered}``."""
        s = self.settings
        out: dict[str, bool] = {}
        if not self.enabled:
            return out
        notice = dataclasses.replace(notice, title=redact_secrets(notice.title),
                                     text=redact_secrets(notice.text),
                                     details=scrub_event(dict(notice.details)))
        await self.setup()
        if s.wecom_webhook_url is not None:
            out["wecom"] = await self._post("wecom", s.wecom_webhook_url.get_secret_value(),
                                            wecom_body(notice))
        if s.pagerduty_routing_key is not None:
            out["pagerduty"] = await self._post(
                "pagerduty", s.pagerduty_url,
                pagerduty_body(notice, s.pagerduty_routing_key.get_secret_value()))
        return out

    async def _post(self, channel: str, url: str, body: dict[str, Any]) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(url, json=body) as r:
                text = await r.text()
                ok = r.status < 300
                if ok and channel == "wecom":
                    # the robot answers HTTP 200 with {"errcode": n} on errors
                    ok = '"errcode":0' in text.replace(" ", "")
                if not ok:
                    raise RuntimeError(f"HTTP {r.status}: {text[:200]}")
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            self.errors[channel] = str(exc)
            log.warning("notification to %s failed: %s", channel, exc)
            return False
        self.errors[channel] = None
        return True
