"""The console at 3 a.m., in headless Chromium against a running worker.

Each defect issue 16 found in the console is a check here (every one failed before):
no login link (a token in the URL fragment now signs in and leaves the address bar);
plan state stuck at "pending" after approval and execution, a failure's reason only in
the timeline; a dry-run badge reading a key the API did not send; no opened/resolved
times, no duration; no search, filter or time range; no link per incident; no ack,
silence, snooze or feedback buttons; runbooks not linked, Alertmanager's runbook and
source links dropped; chart x-axes in the browser's 12-hour clock; charts chosen by
service name (another series of the same service was charted); no audit view.

Screenshots go to ``$SRE_AGENT_SCREENSHOTS`` (docs/img when refreshing the docs),
else to the test's temporary directory.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sre_agent.schemas import (
    ActionResult,
    Anomaly,
    AuditRecord,
    Incident,
    MetricBatch,
    SignalRef,
)
from tests.api_support import api_env, call, incident_events
from tests.browser import Chromium

pytestmark = pytest.mark.integration

METRICS_URL = "http://prometheus.example:9090/graph?g0.expr={query}&g0.range_input=1h"


def q(sel: str) -> str:
    return f"document.querySelector({sel!r})"


def text(sel: str) -> str:
    return f"({q(sel)} || {{innerText: ''}}).innerText"


def click(act: str) -> str:
    return q(f'button[data-act="{act}"]') + ".click()"


async def seed(kafka_io: Any, pfx: str) -> None:
    now = datetime.now(UTC)
    # A: checkout, approved and executed as dry-run (the plan's true state), with a second
    # anomalous series of the same service that is NOT this incident's evidence
    for ev in incident_events("inc-a", service="checkout", severity="critical"):
        await kafka_io.send(pfx + ev.TOPIC, ev)
    await kafka_io.send(pfx + "audit", AuditRecord(
        actor="approval-manager", action="plan.approved", subject="plan-inc-a",
        details={"approvers": ["bob"], "by": "bob"}, time=now - timedelta(seconds=2)))
    await kafka_io.send(pfx + "anomalies", Anomaly(
        anomaly_id="an-other", series='errors_total{service="checkout"}', metric="errors_total",
        service="checkout", labels={"service": "checkout"}, observed=5, expected=1, lower=0,
        upper=2, deviation=4, score=0.8, time=now - timedelta(seconds=25)))
    # B: payments, its only action failed: the reason is on the plan
    for ev in incident_events("inc-b", service="payments", severity="warning", decided=False):
        await kafka_io.send(pfx + ev.TOPIC, ev)
    await kafka_io.send(pfx + "action-results", ActionResult(
        action_id="act-b", plan_id="plan-inc-b", incident_id="inc-b", status="failed",
        detail="deployment payments not found in namespace prod", dry_run=False,
        action="rollout_undo", time=now))
    # C: search, from an Alertmanager alert with runbook and source links
    await kafka_io.send(pfx + "incidents", Incident(
        incident_id="inc-c", title="search: SearchLatencyHigh", severity="info",
        services=["search"], root_service="search", fingerprint="fp-c",
        signals=[SignalRef(kind="alert", ref="fp-c", service="search", metric="SearchLatencyHigh",
                           summary="alert SearchLatencyHigh", time=now - timedelta(seconds=40),
                           attrs={"runbook_url": "https://runbooks.example/search-latency",
                                  "generator_url": "http://prometheus:9090/graph?g0.expr=x"})],
        opened_at=now - timedelta(seconds=40), time=now - timedelta(seconds=40)))
    # D: resolved three days ago (outside the default 24 h range)
    old = now - timedelta(days=3)
    await kafka_io.send(pfx + "incidents", Incident(
        incident_id="inc-d", title="ledger: disk filling", severity="warning", status="resolved",
        services=["ledger"], fingerprint="fp-d", opened_at=old, time=old + timedelta(minutes=42),
        resolved_at=old + timedelta(minutes=42), revision=2))
    # recent values of both checkout series, after their anomalies: chart lines
    t0 = time.time()
    for i in range(40):
        await kafka_io.send(pfx + "metrics", MetricBatch(source="test", series=[
            {"name": "latency_ms", "labels": {"service": "checkout"},
             "points": [(t0 - 25 + i, 50.0 + i % 3)]},
            {"name": "errors_total", "labels": {"service": "checkout"},
             "points": [(t0 - 25 + i, 1.0 + i % 2)]}]))


async def test_console_at_3am(worker_factory, kafka_io, wait_for, tmp_path: Path) -> None:
    w = worker_factory(extra_env=api_env(SRE_AGENT_API__METRICS_URL=METRICS_URL)).start()
    pfx, base = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"], w.url
    shots = Path(os.environ.get("SRE_AGENT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    await seed(kafka_io, pfx)
    await wait_for(lambda: all(call(base, f"/api/incidents/{i}", token="tok-viewer")[0] == 200
                               for i in ("inc-a", "inc-b", "inc-c", "inc-d")), timeout=40)
    sid = 'latency_ms{service="checkout"}'
    await wait_for(lambda: len(call(base, f"/api/series/points?series={sid}",
                                    token="tok-viewer")[1].get("points", [])) >= 5, timeout=30)
    try:
        async with Chromium(tmp_path) as b:
            # -- a link per incident, that signs in with the token in the fragment
            await b.navigate(f"{base}/console#/incident/inc-a?token=tok-operator")
            await b.wait_for(f"{text('#incident-detail h2')} === 'checkout latency spike'")
            assert await b.evaluate("window.location.hash") == "#/incident/inc-a"
            assert await b.evaluate("sessionStorage.getItem('sre-token')") == "tok-operator"
            # -- header: dry-run and auto-remediation as the API says, times in UTC
            assert await b.evaluate(f"{q('#dry-run')}.offsetParent !== null")
            assert await b.evaluate(text("#auto-remediation")) == "auto-remediation off"
            assert "times in UTC" in await b.evaluate("document.querySelector('header').innerText")
            times = await b.evaluate(text("#d-times"))
            assert "opened " in times and " UTC" in times and "duration" in times
            # -- the plan's true state after approval and execution, with its reason
            plan = "[data-plan=\"plan-inc-a\"]"
            await b.wait_for(f"{text(plan + ' .plan-status')} === 'dry-run'")
            assert "1/1 steps" in await b.evaluate(text(plan + " .plan-reason"))
            # -- charts: the incident's evidence only, x-axis in UTC
            await b.wait_for("document.querySelectorAll('#charts .chart canvas').length >= 1")
            charted = await b.evaluate(
                "[...document.querySelectorAll('#charts .chart')].map(c => c.dataset.series)")
            assert charted == [sid], charted
            assert "time (UTC)" in await b.evaluate(text("#charts .u-legend"))
            link = await b.evaluate(f"{q('#charts a.metrics-link')}.href")
            assert link.startswith("http://prometheus.example:9090/graph?g0.expr=latency_ms%7B")
            await b.screenshot(shots / "console-incident.png")

            # -- triage buttons: acknowledge, silence, feedback
            await b.evaluate(click("ack"))
            await b.wait_for(f"{text('#d-triage')}.includes('acknowledged by api:otto')")
            await b.evaluate(click("silence"))
            await b.wait_for(f"{text('#t-note')}.includes('on service=checkout')")
            await b.evaluate(click("feedback-good"))
            await b.wait_for(text("#t-note") + ".includes(\"feedback 'good' recorded\")")

            # -- a failed action: its reason on the plan, not only in the timeline
            await b.navigate(f"{base}/console#/incident/inc-b")
            await b.wait_for(f"{text('#incident-detail h2')} === 'payments latency spike'")
            plan_b = "[data-plan=\"plan-inc-b\"]"
            await b.wait_for(f"{text(plan_b + ' .plan-status')} === 'failed'")
            assert "deployment payments not found" in await b.evaluate(
                text(plan_b + " .plan-reason"))

            # -- runbook and source links kept from Alertmanager
            await b.navigate(f"{base}/console#/incident/inc-c")
            await b.wait_for(f"{text('#incident-detail h2')} === 'search: SearchLatencyHigh'")
            hrefs = await b.evaluate(
                "[...document.querySelectorAll('#links a')].map(a => [a.dataset.kind, a.href])")
            assert ["runbook", "https://runbooks.example/search-latency"] in hrefs
            assert ["source", "http://prometheus:9090/graph?g0.expr=x"] in hrefs

            # -- search, filters and the time range, in the URL
            # (the seeded ones; the correlator also opens its own from the seeded anomalies)
            listed = "[...document.querySelectorAll('#incident-list [data-incident]')]" \
                     ".map(e => e.dataset.incident).filter(i => i.startsWith('inc-'))" \
                     ".sort().join(',')"
            async def shows(url: str, want: str) -> None:
                await b.navigate(url)
                try:
                    await b.wait_for(f"{listed} === {want!r}", timeout=20)
                except AssertionError:
                    raise AssertionError(f"{url}: {await b.evaluate(listed)!r} != {want!r}; "
                                         f"hash {await b.evaluate('window.location.hash')}")

            await shows(f"{base}/console#/incidents?status=all&range=24h", "inc-a,inc-b,inc-c")
            await shows(f"{base}/console#/incidents?status=all&range=7d", "inc-a,inc-b,inc-c,inc-d")
            await shows(f"{base}/console#/incidents?status=all&range=7d&service=payments", "inc-b")
            await shows(f"{base}/console#/incidents?status=all&range=7d&severity=critical", "inc-a")
            await shows(f"{base}/console#/incidents?status=all&range=7d&q=ledger", "inc-d")
            await b.navigate(f"{base}/console#/incident/inc-d")
            await b.wait_for(f"{text('#d-times')}.includes('duration 42 min')")

            # -- silences and the audit trail have their views
            await b.navigate(f"{base}/console#/silences")
            await b.wait_for("document.querySelectorAll('#silence-table [data-silence]').length === 1")
            assert "service=checkout" in await b.evaluate(text("#silence-table"))
            await b.screenshot(shots / "console-silences.png")
            await b.navigate(f"{base}/console#/audit?subject=inc-a")
            await b.wait_for(f"{text('#audit-table')}.includes('incident.ack')")
            assert "api:otto" in await b.evaluate(text("#audit-table"))
            await b.screenshot(shots / "console-audit.png")
    except BaseException:
        print(w.tail(8000))
        raise
    finally:
        w.stop()
