"""On call with the agent, on the real broker: every incident reaches its Slack thread,
people acknowledge, silence and resolve it from the API and ``/sre``, and it is audited.

Defects of issue 16 proven here (each failed before): an incident with no plan reached
nobody; nobody could acknowledge, snooze or resolve; silences existed only in the
configuration; every incident was critical; Alertmanager's runbook and source links
were dropped; the dry-run badge read a key the API did not send.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from sre_agent.schemas import Anomaly
from tests.api_support import api_env, call, slack_post
from tests.standins.slack_server import SlackStandin

pytestmark = pytest.mark.integration

HOOK = "hook-secret-oncall"


def anomaly(service: str, metric: str, when: datetime, namespace: str = "prod") -> Anomaly:
    return Anomaly(anomaly_id=f"{service}-{metric}", metric=metric, service=service,
                   series=f'{metric}{{service="{service}"}}', observed=900.0, expected=50.0,
                   lower=40.0, upper=60.0, deviation=9.0, score=0.99, severity="critical",
                   labels={"service": service, "namespace": namespace}, time=when,
                   started_at=when)


def post_json(base: str, path: str, body: Any, token: str | None = "tok-operator",
              method: str = "POST") -> tuple[int, Any, str]:
    return call(base, path, method, token=token, body=orjson.dumps(body),
                headers={"Content-Type": "application/json"})


async def test_oncall_triage_silences_and_threads(worker_factory, kafka_io, wait_for) -> None:
    slack = await SlackStandin().start()
    sinks = [{"slack_sink": {"name": "oncall", "slack_channel": "#oncall"}},
             {"slack_sink": {"name": "prod-critical", "slack_channel": "#prod-critical",
                             "scope": {"include": [{"severity": "critical",
                                                    "namespace": "prod"}]}}}]
    w = worker_factory(extra_env=api_env(
        SRE_AGENT_SLACK__BOT_TOKEN=slack.token, SRE_AGENT_SLACK__BASE_URL=slack.base_url,
        SRE_AGENT_SLACK__MAX_RETRIES="0", SRE_AGENT_API__WEBHOOK_TOKEN=HOOK,
        SRE_AGENT_NOTIFY__SINKS=orjson.dumps(sinks).decode(),
        SRE_AGENT_NOTIFY__CONSOLE_URL="http://agent/console#/incident/{incident_id}",
        SRE_AGENT_CORRELATION__TICK_INTERVAL="1",
        SRE_AGENT_CORRELATION__RESOLVE_HOLDDOWN="1")).start()
    try:
        await scenario(w, slack, kafka_io, wait_for)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()
        await slack.stop()


async def scenario(w: Any, slack: SlackStandin, kafka_io: Any, wait_for: Any) -> None:
    base, pfx = w.url, w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    now = datetime.now(UTC)
    # the console's header badge reads what /api/status sends
    status = call(base, "/api/status", token="tok-viewer")[1]
    assert status["dry_run"] is True and status["auto_remediation"] is False

    # -- an alert with its runbook and source links, on a service no playbook covers
    alert = {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "fingerprint": "fp-search",
        "labels": {"alertname": "SearchLatencyHigh", "service": "search", "severity": "warning",
                   "namespace": "prod"},
        "annotations": {"summary": "p99 above 2 s",
                        "runbook_url": "https://runbooks.example/search-latency"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=search_latency",
        "startsAt": now.isoformat()}]}
    code, _, _ = call(base, "/webhooks/alertmanager", "POST", body=orjson.dumps(alert),
                      headers={"Authorization": f"Bearer {HOOK}"})
    assert code == 202
    found = await wait_for(lambda: call(base, "/api/incidents?q=search", token="tok-viewer")[1][
        "items"], timeout=40)
    iid = found[0]["incident_id"]
    assert found[0]["severity"] == "warning"  # not critical by default
    detail = call(base, f"/api/incidents/{iid}", token="tok-viewer")[1]
    links = {x["kind"]: x["url"] for x in detail["links"]}
    assert links == {"runbook": "https://runbooks.example/search-latency",
                     "source": "http://prometheus:9090/graph?g0.expr=search_latency"}
    assert detail["incident"]["severity_reasons"]

    # -- every incident reaches its routed sinks: a thread in #oncall, not #prod-critical
    parent = await wait_for(lambda: next((m for m in slack.messages.values()
                                          if m.get("requested_channel") == "#oncall"), None))
    assert "search" in parent["text"] and not [
        m for m in slack.messages.values() if m.get("requested_channel") == "#prod-critical"]

    # -- roles come from the configuration, never from the request body
    assert post_json(base, f"/api/incidents/{iid}/ack", {}, token="tok-viewer")[0] == 403
    code, body, _ = post_json(base, f"/api/incidents/{iid}/ack", {"actor": "mallory"})
    assert code == 400 and "actor" in body["error"]
    code, body, _ = post_json(base, f"/api/incidents/{iid}/ack", {"comment": "looking"})
    assert code == 202 and body["actor"] == "api:otto"
    assert post_json(base, "/api/incidents/nope/ack", {})[0] == 404
    assert post_json(base, f"/api/incidents/{iid}/dance", {})[0] == 404
    code, _, _ = post_json(base, f"/api/incidents/{iid}/assign", {"assignee": "olga"})
    assert code == 202
    summary = await wait_for(lambda: (lambda s: s if s["acked_by"] and s["assignee"] else None)(
        call(base, f"/api/incidents/{iid}", token="tok-viewer")[1]["summary"]))
    assert summary["acked_by"] == "api:otto" and summary["assignee"] == "olga"
    acked = await wait_for(lambda: [r for r in slack.thread(parent["ts"])
                                    if r["text"].startswith("*acknowledged*")])
    assert "acknowledged by api:otto: looking" in acked[0]["text"]

    # -- snooze from the API and /sre; ack and assign from /sre (user ids mapped to roles)
    assert post_json(base, f"/api/incidents/{iid}/snooze", {})[0] == 400  # how long?
    code, _, _ = post_json(base, f"/api/incidents/{iid}/snooze", {"minutes": 30})
    assert code == 202
    await wait_for(lambda: call(base, f"/api/incidents/{iid}", token="tok-viewer")[1][
        "summary"]["snoozed_until"])
    code, reply, _ = slack_post(base, f"snooze {iid[:8]} 1h after the deploy")
    assert code == 200 and "snoozed for 60 min by olga" in reply["text"], reply
    code, reply, _ = slack_post(base, f"assign {iid[:8]} me")
    assert code == 200 and "assigned to slack:U-ONCALL" in reply["text"], reply
    code, reply, _ = slack_post(base, f"ack {iid[:8]} on it")
    assert code == 200 and "acknowledged by olga" in reply["text"], reply
    assert "needs the oncall role" in slack_post(base, f"snooze {iid} 1h",
                                                 user_id="U-VIEWER")[1]["text"]
    summary = await wait_for(lambda: (lambda s: s if s["assignee"].startswith("slack:") else None)(
        call(base, f"/api/incidents/{iid}", token="tok-viewer")[1]["summary"]))
    assert summary["snoozed_until"] and summary["acked_by"]

    # -- a silence created at run time drops matching signals in the correlator
    code, sil, _ = post_json(base, "/api/silences", {"matchers": {"service": "checkout"},
                                                     "duration_minutes": 30,
                                                     "comment": "deploy of v2.4"})
    assert code == 201 and sil["author"] == "api:otto" and sil["active"]
    assert post_json(base, "/api/silences", {"matchers": {"service": "*"}, "duration_minutes": 5,
                                             "comment": "all"})[0] == 400
    assert post_json(base, "/api/silences", {"matchers": {"service": "x"},
                                             "comment": "forever"})[0] == 400
    assert post_json(base, "/api/silences", {"matchers": {"service": "x"}, "duration_minutes": 5,
                                             "comment": "x"}, token="tok-viewer")[0] == 403
    before = w.get_json("/api/correlation/stats")["silenced"]
    await kafka_io.send(pfx + "anomalies", anomaly("checkout", "latency_ms", datetime.now(UTC)))
    await wait_for(lambda: w.get_json("/api/correlation/stats")["silenced"] > before, timeout=30)
    assert not call(base, "/api/incidents?q=checkout", token="tok-viewer")[1]["items"]
    listed = call(base, "/api/silences", token="tok-viewer")[1]["items"]
    assert [s["silence_id"] for s in listed] == [sil["silence_id"]]

    # -- /sre: silences, detect, resolve (Slack user ids mapped to roles)
    code, reply, _ = slack_post(base, "silences")
    assert code == 200 and sil["silence_id"] in orjson.dumps(reply).decode()
    code, reply, _ = slack_post(base, f"resolve {iid[:8]} fixed the index")
    assert code == 200 and "resolved by olga" in reply["text"]
    assert "needs the oncall role" in slack_post(base, f"resolve {iid}", user_id="U-VIEWER")[1][
        "text"]
    done = await wait_for(lambda: (lambda s: s if s["status"] == "resolved" else None)(
        call(base, f"/api/incidents/{iid}", token="tok-viewer")[1]["summary"]), timeout=30)
    assert done["resolved_by"] == "slack:U-ONCALL" and done["duration_seconds"] is not None
    resolved = await wait_for(lambda: [r for r in slack.thread(parent["ts"])
                                       if r["text"].startswith("*resolved*")])
    assert "resolved by slack:U-ONCALL" in resolved[0]["text"]
    code, reply, _ = slack_post(base, f"unsilence {sil['silence_id']}")
    assert code == 200 and "expired" in reply["text"]
    assert call(base, "/api/silences", token="tok-viewer")[1]["items"] == []
    code, reply, _ = slack_post(base, "detect")
    assert code == 200 and reply["blocks"]

    # -- seed 003: learn a pattern, detect in a given series and match it
    pattern = {"title": "Search shard hot spot", "cause_type": "shard_hotspot",
               "symptoms": ["search latency spike on one shard", "search p99 high"],
               "root_causes": ["unbalanced shard routing"],
               "solutions": [{"action": "rebalance_shards", "confidence": 0.7, "risk": "low"}]}
    assert post_json(base, "/api/patterns/learn", pattern, token="tok-viewer")[0] == 403
    assert post_json(base, "/api/patterns/learn", {**pattern, "cause_type": "Bad Type"})[0] == 400
    code, learned, _ = await wait_for(lambda: (lambda r: r if r[0] != 503 else None)(
        post_json(base, "/api/patterns/learn", pattern)), timeout=60)
    assert code == 201 and learned["pattern_id"].startswith("PAT-USER-")
    t0 = now.timestamp() - 3600
    points = [[t0 + 60 * i, 100.0 + (i % 7)] for i in range(90)] + [[t0 + 5400, 900.0]]
    code, found, _ = post_json(base, "/api/patterns/detect", {
        "series": {"metric": "search_latency_ms", "service": "search", "points": points},
        "text": "search latency spike on one shard"}, token="tok-viewer")
    assert code == 200 and found["source"] == "series", found
    assert [a["start"] for a in found["anomalies"]] == [t0 + 5400]
    assert found["text_matches"] and found["text_matches"][0]["title"] == "Search shard hot spot"
    assert post_json(base, "/api/patterns/detect", {"series": {"metric": "x", "points": []}},
                     token="tok-viewer")[0] == 400

    # -- all of it audited, with who did it
    def audited() -> Any:
        acts = {(r["action"], r["actor"]) for r in call(
            base, "/api/audit?limit=500", token="tok-operator")[1]["items"]}
        want = {("incident.ack", "api:otto"), ("incident.assign", "api:otto"),
                ("silence.created", "api:otto"), ("silence.applied", "correlator"),
                ("incident.snooze", "api:otto"), ("incident.snooze", "slack:U-ONCALL"),
                ("incident.assign", "slack:U-ONCALL"), ("incident.ack", "slack:U-ONCALL"),
                ("incident.resolve", "slack:U-ONCALL"), ("silence.expired", "slack:U-ONCALL"),
                ("notify.sent", "notifier"), ("pattern.learned", "api:otto")}
        return want <= acts
    await wait_for(audited, timeout=30)
    assert (datetime.now(UTC) - now) < timedelta(minutes=5)
