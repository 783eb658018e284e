"""Feedback through the API and the Slack ``/sre`` command, on a real worker and broker."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.api_support import api_env, call, incident_events, slack_post

pytestmark = pytest.mark.integration


def texts(reply: dict) -> str:
    """All text of a Block Kit reply."""
    out = [reply.get("text", "")]
    for b in reply.get("blocks", []):
        if "text" in b:
            out.append(b["text"]["text"])
        for e in b.get("elements", []):
            out.append(e.get("text", ""))
    return "\n".join(out)


async def test_feedback_and_slash_commands(worker_factory, kafka_io, wait_for) -> None:
    w = worker_factory(extra_env=api_env()).start()
    pfx, base = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"], w.url
    for ev in incident_events("inc-0", service="checkout"):
        await kafka_io.send(pfx + ev.TOPIC, ev)
    await wait_for(
        lambda: call(base, "/api/incidents/inc-0", token="tok-viewer")[0] == 200, timeout=30
    )

    # --- REST feedback: validated, produced with the token's user, audited
    st, body, _ = call(
        base,
        "/api/feedback",
        "POST",
        token="tok-viewer",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert st == 403
    st, body, _ = call(
        base,
        "/api/feedback",
        "POST",
        token="tok-operator",
        body=orjson.dumps({"incident_id": "inc-0", "rating": "good", "comment": "spot on"}),
        headers={"Content-Type": "application/json"},
    )
    assert st == 202 and body["accepted"], body
    fb_id = body["event_id"]

    # --- Slack signature: missing, wrong secret and stale requests are refused
    st, body, _ = call(
        base,
        "/slack/commands",
        "POST",
        body=b"text=status&user_id=U-ONCALL",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert st == 401 and "signature" in body["error"]
    assert slack_post(base, "status", secret="not-the-secret")[0] == 401
    assert slack_post(base, "status", ts=int(time.time()) - 3600)[0] == 401

    # --- commands, each answered with Block Kit
    st, r, _ = slack_post(base, "status")
    assert st == 200 and r["blocks"] and "Open incidents" in texts(r)
    st, r, _ = slack_post(base, "incidents", user_id="U-VIEWER", user_name="vic")
    assert st == 200 and "checkout latency spike" in texts(r) and "inc-0" in texts(r)
    # issue 15: read commands need a mapped role; a user *named* like an on-call gets none
    for cmd in ("incidents", "rca inc-0", "status"):
        st, r, _ = slack_post(base, cmd, user_id="U-NOBODY", user_name="olga")
        assert st == 200 and "needs the viewer role" in texts(r), texts(r)
    st, r, _ = slack_post(base, "rca inc-0")
    assert "bad_deploy" in texts(r) and "v2.4.0 rolled out" in texts(r)
    st, r, _ = slack_post(base, "approve plan-inc-0 looks right")
    assert st == 200 and "recorded" in texts(r)
    st, r, _ = slack_post(base, "reject plan-inc-0", user_id="U-VIEWER", user_name="vic")
    assert st == 200 and "needs the oncall role" in texts(r)
    st, r, _ = slack_post(base, "feedback inc-0 bad wrong service")
    assert st == 200 and "recorded" in texts(r)
    st, r, _ = slack_post(base, "fix inc-0")
    assert st == 200 and "planner" in texts(r)
    st, r, _ = slack_post(base, "pattern search connection pool exhausted")
    assert st == 200 and r["blocks"]  # results, or why the knowledge base cannot answer
    st, r, _ = slack_post(base, "reboot everything")
    assert st == 200 and "unknown command" in texts(r) and "Usage" in texts(r)

    # --- what the commands produced
    votes = await kafka_io.read(
        pfx + "approvals", until=lambda ms: any(m["source"] == "slack" for m in ms), timeout=20
    )
    slack_votes = [v for v in votes if v["source"] == "slack"]
    assert [(v["plan_id"], v["decision"], v["user"], v["role"]) for v in slack_votes] == [
        ("plan-inc-0", "approve", "U-ONCALL", "oncall")
    ]
    assert "looks right" in slack_votes[0]["comment"]
    fbs = await kafka_io.read(pfx + "feedback", until=lambda ms: len(ms) >= 2, timeout=20)
    assert {(f["event_id"] == fb_id, f["rating"], f["user"]) for f in fbs} == {
        (True, "good", "otto"),
        (False, "bad", "slack:olga"),
    }
    rcas = await kafka_io.read(
        pfx + "rca-results",
        until=lambda ms: sum(m["incident_id"] == "inc-0" for m in ms) >= 2,
        timeout=20,
    )
    mine = [
        m
        for m in rcas
        if m["incident_id"] == "inc-0"
        and m["hypotheses"]
        and m["hypotheses"][0]["cause_type"] == "bad_deploy"
    ]
    assert (
        len(mine) == 2 and mine[0]["event_id"] != mine[1]["event_id"]
    )  # re-published for the planner

    def audited(ms: list[dict]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for m in ms:
            if m["action"].startswith("chatops.") or m["action"] == "feedback.submitted":
                out.setdefault(m["action"], []).append(m["details"].get("outcome", "ok"))
        return out

    want = {
        "chatops.status",
        "chatops.incidents",
        "chatops.rca",
        "chatops.approve",
        "chatops.reject",
        "chatops.feedback",
        "chatops.fix",
        "chatops.pattern_search",
        "chatops.invalid",
    }
    audit = await kafka_io.read(
        pfx + "audit", until=lambda ms: want <= set(audited(ms)), timeout=20
    )
    got = audited(audit)
    assert got["chatops.approve"] == ["ok"] and got["chatops.reject"] == ["denied"]
    assert got["chatops.invalid"] == ["invalid"] and len(got["feedback.submitted"]) == 2
    # every command is audited with who ran it
    assert all(
        m["actor"].startswith("slack:U-") for m in audit if m["action"].startswith("chatops.")
    )
    assert w.stop() == 0, w.tail()
