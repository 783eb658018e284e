"""REST API, /metrics and /openapi.json on a real worker and broker."""

from __future__ import annotations

import orjson
import pytest
from openapi_spec_validator import validate

from tests.api_support import api_env, call, incident_events

pytestmark = pytest.mark.integration


def metric(text: str, name: str, default: float | None = None) -> float:
    """Value of one sample line of the Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    if default is not None:
        return default
    raise AssertionError(f"{name} not in /metrics:\n{text[:3000]}")


async def test_auth_errors_pagination_detail_openapi_metrics(
    worker_factory, kafka_io, wait_for
) -> None:
    w = worker_factory(extra_env=api_env()).start()
    pfx, base = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"], w.url
    for i in range(3):
        for ev in incident_events(f"inc-{i}", service=f"svc{i}"):
            await kafka_io.send(pfx + ev.TOPIC, ev)
    await kafka_io.send_raw(pfx + "incidents", b"{broken", key=b"x")

    # --- auth: 401 without/with a bad token, 403 for a too-small role
    st, body, _ = call(base, "/api/incidents")
    assert st == 401 and "bearer token" in body["error"]
    st, body, _ = call(base, "/api/incidents", token="nope")
    assert st == 401
    st, body, _ = call(base, "/api/audit", token="tok-viewer")
    assert st == 403 and "operator" in body["error"] and "vera" in body["error"]
    st, body, _ = call(base, "/api/whoami", token="tok-approver")
    assert (st, body) == (200, {"user": "alice", "role": "approver"})

    # --- the read model fills up (other stages may add incidents/plans of their own)
    def ids() -> set[str]:
        return {
            i["incident_id"]
            for i in call(base, "/api/incidents?limit=1000", token="tok-viewer")[1]["items"]
        }

    await wait_for(lambda: {"inc-0", "inc-1", "inc-2"} <= ids(), timeout=30)
    # --- pagination with limit/offset (on a list no other stage adds to: our audit records)
    st, p1, _ = call(base, "/api/incidents?limit=2", token="tok-viewer")
    assert st == 200 and len(p1["items"]) == 2 and p1["next_offset"] == 2 and p1["total"] >= 3
    q = "/api/audit?actor=risk&limit=2"
    st, a1, _ = call(base, q, token="tok-operator")
    assert (a1["total"], len(a1["items"]), a1["next_offset"]) == (3, 2, 2)
    st, a2, _ = call(base, q + "&offset=2", token="tok-operator")
    assert (len(a2["items"]), a2["next_offset"]) == (1, None)
    subjects = {a["subject"] for a in a1["items"] + a2["items"]}
    assert subjects == {"plan-inc-0", "plan-inc-1", "plan-inc-2"}
    st, mine, _ = call(base, "/api/incidents?service=svc2", token="tok-viewer")
    assert "inc-2" in {i["incident_id"] for i in mine["items"]}
    assert all("svc2" in i["services"] for i in mine["items"])

    # --- 4xx with clear messages
    for path, needle in [
        ("/api/anomalies?hours=abc", "hours"),
        ("/api/incidents?limit=0", "limit"),
        ("/api/incidents?status=bogus", "status must be one of"),
        ("/api/series/points", "series"),
        ("/api/patterns/search", "q "),
    ]:
        st, body, _ = call(base, path, token="tok-viewer")
        assert st == 400 and needle in body["error"], (path, st, body)
    st, body, _ = call(base, "/api/incidents/does-not-exist", token="tok-viewer")
    assert st == 404 and "not found" in body["error"]
    st, body, _ = call(
        base,
        "/api/feedback",
        "POST",
        token="tok-operator",
        body=b"x",
        headers={"Content-Type": "text/plain"},
    )
    assert st == 415
    st, body, _ = call(
        base,
        "/api/feedback",
        "POST",
        token="tok-operator",
        body=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert st == 400 and "not valid JSON" in body["error"]
    st, body, _ = call(
        base,
        "/api/feedback",
        "POST",
        token="tok-operator",
        body=orjson.dumps({"incident_id": "inc-0", "rating": "meh"}),
        headers={"Content-Type": "application/json"},
    )
    assert st == 400 and "rating" in body["error"]

    # --- incident detail: RCA evidence, plan with its vote and result, timeline
    st, d, _ = call(base, "/api/incidents/inc-1", token="tok-viewer")
    assert st == 200 and d["summary"]["title"] == "svc1 latency spike"
    pv = next(p for p in d["plans"] if p["plan"]["plan_id"] == "plan-inc-1")
    assert pv["approvals"][0]["user"] == "bob" and pv["results"][0]["status"] == "dry_run"
    kinds = {e["kind"] for e in d["timeline"]}
    assert {"incident", "signal", "rca", "plan", "approval", "action"} <= kinds
    assert any(
        e["kind"] == "rca" and e["summary"].startswith("bad_deploy on svc1 (82%)")
        for e in d["timeline"]
    )
    assert d["series"] == ['latency_ms{service="svc1"}']
    st, _, _ = call(base, "/api/incidents/inc-", token="tok-viewer")  # ambiguous prefix
    assert st == 404

    # --- other reads
    st, an, _ = call(base, "/api/anomalies?hours=1&service=svc2", token="tok-viewer")
    assert st == 200 and [a["anomaly_id"] for a in an["items"]] == ["an-inc-2"]
    st, au, _ = call(
        base, "/api/audit?subject=plan-inc-0&actor=risk&action=plan.", token="tok-operator"
    )
    assert st == 200 and [a["action"] for a in au["items"]] == ["plan.created"]
    st, s, _ = call(base, "/api/status", token="tok-viewer")
    assert s["incidents_open"] >= 3 and s["actions_by_outcome"]["dry_run"] >= 3
    assert s["readmodel"]["rejected"] == {"incidents": 1} and s["readmodel"]["caught_up"]
    st, pts, _ = call(
        base, '/api/series/points?series=latency_ms{service="svc0"}', token="tok-viewer"
    )
    assert (
        st == 200
        and pts["points"][0][1] == 900.0
        and pts["anomalies"][0]["anomaly_id"] == "an-inc-0"
    )

    # --- OpenAPI: a valid 3.1 document listing what is served
    st, doc, _ = call(base, "/openapi.json")
    assert st == 200
    validate(doc)
    for path in (
        "/api/incidents",
        "/api/incidents/{incident_id}",
        "/api/anomalies",
        "/api/feedback",
        "/api/patterns/search",
        "/api/audit",
        "/api/predictions",
        "/api/status",
        "/slack/commands",
        "/metrics",
        "/api/baselines",
    ):
        assert path in doc["paths"], path
    assert doc["paths"]["/api/feedback"]["post"]["security"] == [{"bearerAuth": []}]

    # --- /metrics in Prometheus text format
    st, _, text = call(base, "/metrics")
    assert st == 200
    assert metric(text, 'sre_agent_readmodel_events_total{topic="incidents"}') >= 3
    assert metric(text, 'sre_agent_readmodel_rejected_total{topic="incidents"}') == 1
    assert metric(text, 'sre_agent_readmodel_action_results{outcome="dry_run"}') >= 3
    assert metric(text, 'sre_agent_stage_latency_seconds_count{stage="rca"}') >= 3
    assert metric(text, 'sre_agent_events_in_total{topic="metrics"}', default=0.0) >= 0
    assert "sre_agent_consumer_lag_total" in text and "sre_agent_api_requests_total" in text
    assert w.stop() == 0, w.tail()
