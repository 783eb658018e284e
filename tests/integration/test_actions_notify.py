"""WeCom group robot and PagerDuty Events v2 notifications, against a local HTTP
server that answers like those services (the real aiohttp client posts)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from sre_agent.config import NotifySettings
from sre_agent.devstack import free_port
from sre_agent.sinks.notify import Notice, Notifier

pytestmark = pytest.mark.integration


async def test_wecom_and_pagerduty() -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    wecom_errcode = {"value": 0}

    async def wecom(request: web.Request) -> web.Response:
        got.append(("wecom:" + request.query.get("key", ""), await request.json()))
        code = wecom_errcode["value"]
        return web.json_response({"errcode": code, "errmsg": "ok" if not code else "invalid"})

    async def pagerduty(request: web.Request) -> web.Response:
        body = await request.json()
        got.append(("pagerduty", body))
        if body.get("routing_key") != "rk-1":
            return web.json_response({"status": "invalid event", "message": "bad key"}, status=400)
        return web.json_response({"status": "success", "dedup_key": body.get("dedup_key")},
                                 status=202)

    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", wecom)
    app.router.add_post("/v2/enqueue", pagerduty)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        n = Notifier(NotifySettings(wecom_webhook_url=f"{base}/cgi-bin/webhook/send?key=robot-1",
                                    pagerduty_routing_key="rk-1", pagerduty_url=f"{base}/v2/enqueue"))
        sent = await n.add(Notice(title="Plan BLOCKED", text="wallet-service: diagnosis only",
                                  severity="critical", dedup_key="plan-9"))
        assert sent == {"wecom": True, "pagerduty": True}
        (w_who, w_body), (p_who, p_body) = got
        assert w_who == "wecom:robot-1" and w_body["msgtype"] == "markdown"
        assert "**Plan BLOCKED**" in w_body["markdown"]["content"]
        assert p_body["event_action"] == "trigger" and p_body["dedup_key"] == "plan-9"
        assert p_body["payload"]["severity"] == "critical" and p_body["payload"]["source"] == "sre-agent"
        assert await n.add(Notice(title="t", text="x", dedup_key="plan-9", resolve=True)) == {
            "wecom": True, "pagerduty": True}
        assert got[-1][1]["event_action"] == "resolve" and "payload" not in got[-1][1]

        wecom_errcode["value"] = 93000  # the robot answers HTTP 200 with an error code
        bad = Notifier(NotifySettings(wecom_webhook_url=f"{base}/cgi-bin/webhook/send?key=x",
                                      pagerduty_routing_key="wrong", pagerduty_url=f"{base}/v2/enqueue"))
        assert await bad.add(Notice(title="t", text="x")) == {"wecom": False, "pagerduty": False}
        assert "93000" in (bad.errors["wecom"] or "") and "400" in (bad.errors["pagerduty"] or "")
        down = Notifier(NotifySettings(pagerduty_routing_key="rk-1",
                                       pagerduty_url=f"http://127.0.0.1:{free_port()}/v2/enqueue"))
        assert await down.add(Notice(title="t", text="x")) == {"pagerduty": False}
        assert Notifier(NotifySettings()).enabled is False
        for x in (n, bad, down):
            await x.close()
    finally:
        await runner.cleanup()
