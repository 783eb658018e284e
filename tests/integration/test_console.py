"""The web console in headless Chromium against a running worker.

Loads the page, checks a live incident appears with its RCA evidence, plan and
chart, approves the plan with the button (through the approval stage's
endpoint), checks a viewer sees no buttons, and saves screenshots.
"""

from __future__ import annotations

import time

import pytest

from sre_agent.schemas import DECISION_TOPICS, MetricBatch
from tests.api_support import api_env, call, incident_events
from tests.browser import Chromium

pytestmark = pytest.mark.integration

SEL_INCIDENT = "document.querySelector('[data-incident=\"inc-web\"]')"
SEL_PLAN = "document.querySelector('[data-plan=\"plan-inc-web\"]')"


async def test_console_shows_live_incident_and_approves(
    worker_factory, kafka_io, wait_for, tmp_path
) -> None:
    w = worker_factory(extra_env=api_env()).start()
    pfx, base = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"], w.url
    for ev in incident_events("inc-web", service="checkout", decided=False):
        # the plan is signed as the agent signs it: the approval manager refuses (and the
        # console shows as refused) a plan that is not
        send = kafka_io.send_signed if ev.TOPIC in DECISION_TOPICS else kafka_io.send
        await send(pfx + ev.TOPIC, ev)
    await wait_for(
        lambda: call(base, "/api/incidents/inc-web", token="tok-viewer")[0] == 200, timeout=30
    )
    # recent values of the anomalous series, after its anomaly: the chart's line
    # (past the baseline's warm-up, so the last points carry the learned band)
    now = time.time()
    for i in range(45):
        await kafka_io.send(
            pfx + "metrics",
            MetricBatch(
                source="test",
                series=[
                    {
                        "name": "latency_ms",
                        "labels": {"service": "checkout"},
                        "points": [(now - 25 + i, 50.0 + i % 3)],
                    }
                ],
            ),
        )
    sid = 'latency_ms{service="checkout"}'

    def banded() -> int:
        pts = call(base, f"/api/series/points?series={sid}", token="tok-viewer")[1]["points"]
        return sum(1 for p in pts[1:] if p[3] is not None and p[3] <= p[1] <= p[4])

    await wait_for(lambda: banded() >= 5, timeout=30)

    async with Chromium(tmp_path) as browser:
        await browser.navigate(f"{base}/console#token=tok-approver")
        await browser.wait_for(f"{SEL_INCIDENT} !== null")
        assert "checkout latency spike" in await browser.evaluate(f"{SEL_INCIDENT}.innerText")
        await browser.evaluate(f"{SEL_INCIDENT}.click()")
        await browser.wait_for(
            "(document.querySelector('#incident-detail h2') || {}).innerText "
            "=== 'checkout latency spike'"
        )
        detail = await browser.evaluate("document.querySelector('#incident-detail').innerText")
        assert "bad_deploy" in detail and "v2.4.0 rolled out" in detail  # RCA evidence
        assert "rollout_undo" in detail and "MEDIUM" in detail  # the action plan
        await browser.wait_for("document.querySelectorAll('#charts .chart canvas').length >= 1")
        assert await browser.evaluate("document.querySelector('#timeline').children.length") >= 4
        assert (
            await browser.evaluate("document.querySelector('#agent-status').innerText")
            == "agent ok"
        )
        approve = f"{SEL_PLAN}.querySelector('button.approve')"
        await browser.wait_for(f"{approve} !== null && {approve}.offsetParent !== null")
        shot = await browser.screenshot(tmp_path / "console-approver.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # the Approve button posts the vote with the user's token
        await browser.evaluate(f"{SEL_PLAN}.querySelector('input').value = 'ok from console'")
        await browser.evaluate(
            f"{SEL_PLAN}.querySelector('input').dispatchEvent(new Event('input'))"
        )
        await browser.evaluate(f"{approve}.click()")
        notice = await browser.wait_for(
            f"{SEL_PLAN} && {SEL_PLAN}.querySelector('.notice').innerText"
        )
        votes = await kafka_io.read(
            pfx + "approvals", until=lambda ms: any(m["user"] == "alice" for m in ms), timeout=20
        )
        vote = next(m for m in votes if m["user"] == "alice")
        assert (vote["plan_id"], vote["decision"], vote["source"]) == (
            "plan-inc-web",
            "approve",
            "api",
        ), notice
        assert vote["comment"] == "ok from console"

        # a viewer sees the incident but no approve/reject buttons
        await browser.navigate("about:blank")
        await browser.navigate(f"{base}/console#token=tok-viewer")
        await browser.wait_for(
            f"{SEL_INCIDENT} !== null && document.querySelector('#incident-detail') !== null"
        )
        await browser.wait_for(f"{SEL_PLAN} !== null")
        assert await browser.evaluate(
            "[...document.querySelectorAll('button.approve')].every(b => b.offsetParent === null)"
        )
        await browser.screenshot(tmp_path / "console-viewer.png")
    print(
        f"\nconsole screenshots: {tmp_path / 'console-approver.png'}, "
        f"{tmp_path / 'console-viewer.png'}"
    )
    assert w.stop() == 0, w.tail()
