"""Issue 15, findings 3 (webhooks and the Kafka side) and 7 (Slack and webhooks).

* ``/slack/commands`` and ``/slack/interactions`` answer 4xx, never 5xx, to a
  non-UTF-8 body, to unsigned requests with a bad timestamp (non-ASCII digits, huge
  numbers, letters) and to a non-ASCII signature;
* a Slack user whose *name* is an approver's but whose id is not mapped gets no role;
* a webhook token in the query string is refused (tokens only in headers);
* an Alertmanager payload with more alerts than one request may carry gets one 413
  and produces nothing;
* 300 undecodable messages on ``alerts`` go to the DLQ with a handful of log lines,
  not 300.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from typing import Any

import orjson
import pytest

from sre_agent.web.webhooks import MAX_WEBHOOK_EVENTS
from tests.actions_support import http

pytestmark = pytest.mark.integration

SECRET = "hostile-signing-secret"
TOKEN = "hostile-webhook-token"


def signed(body: bytes, ts: str | None = None) -> dict[str, str]:
    stamp = ts or str(int(time.time()))
    # computed by hand: slack_sdk's helper cannot sign a body that is not UTF-8
    sig = "v0=" + hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body,
                           hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded"}


async def test_malformed_requests_get_4xx_and_bounded_work(worker_factory, kafka_io,
                                                           wait_for) -> None:
    w = worker_factory(extra_env={
        "SRE_AGENT_SLACK__SIGNING_SECRET": SECRET,
        "SRE_AGENT_SLACK__USER_ROLES": '{"U-LEAD": "lead", "lena": "lead"}',
        "SRE_AGENT_API__WEBHOOK_TOKEN": TOKEN}).start()
    try:
        await scenario(w, kafka_io, wait_for)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()


async def scenario(w: Any, kafka_io: Any, wait_for: Any) -> None:
    for path in ("/slack/commands", "/slack/interactions"):
        url = w.url + path
        bad_body = b"text=status&user_id=U-LEAD&x=\xff\xfe"
        cases = [
            (bad_body, signed(bad_body)),  # correctly signed, not UTF-8
            (bad_body, {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}),
            (b"text=status", {"X-Slack-Request-Timestamp": "\u0661\u0662\u0663",
                              "X-Slack-Signature": "v0=" + "0" * 64}),
            (b"text=status", {"X-Slack-Request-Timestamp": "9" * 40,
                              "X-Slack-Signature": "v0=" + "0" * 64}),
            (b"text=status", {"X-Slack-Request-Timestamp": str(int(time.time())),
                              "X-Slack-Signature": "v0=\u00e9" + "0" * 63}),
            (b"", {}),
        ]
        for body, headers in cases:
            status, answer = await http("POST", url, body, headers)
            assert 400 <= status < 500, (path, headers, status, answer)

    # a name is not an identity: user "lena" (a lead by name only) gets no role
    payload = {"type": "block_actions", "user": {"id": "U-OTHER", "username": "lena"},
               "actions": [{"action_id": "sre_plan_approve", "value": "plan-x"}]}
    body = urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()
    status, answer = await http("POST", w.url + "/slack/interactions", body, signed(body))
    assert status == 200 and "not an approver" in answer["text"], answer
    body = urllib.parse.urlencode({"text": "incidents", "user_id": "U-OTHER",
                                   "user_name": "lena"}).encode()
    status, answer = await http("POST", w.url + "/slack/commands", body, signed(body))
    assert status == 200 and "needs the viewer role" in orjson.dumps(answer).decode()

    # webhook tokens only in headers
    alert = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "A", "service": "s"}}]}
    status, _ = await http("POST", f"{w.url}/webhooks/alertmanager?token={TOKEN}",
                           orjson.dumps(alert), {"Content-Type": "application/json"})
    assert status == 401
    hook = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, _ = await http("POST", w.url + "/webhooks/alertmanager", orjson.dumps(alert), hook)
    assert status == 202

    # too many alerts in one request: one 413, nothing produced
    many = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": f"A{i}", "service": "s"}}
        for i in range(MAX_WEBHOOK_EVENTS + 1)]}
    status, answer = await http("POST", w.url + "/webhooks/alertmanager", orjson.dumps(many),
                                hook)
    assert status == 413 and "at most" in answer["error"], answer
    for bad in (b"\xff\xfe not json", b'{"alerts": "nope"}', b"[]"):
        status, _ = await http("POST", w.url + "/webhooks/alertmanager", bad, hook)
        assert status in (400, 422), status

    # a flood of undecodable events on a topic: all dead-lettered, a few log lines
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    for i in range(300):
        await kafka_io._producer.send(pfx + "alerts", value=b"{broken %d" % i, key=b"k")
    await kafka_io._producer.flush()
    await wait_for(lambda: w.status()["dlq"].get("alerts", 0) >= 300, timeout=60)
    events_in = w.status()["events_in"]
    assert events_in["webhook:alertmanager"] == 1  # the 413 produced nothing
    assert events_in["webhook:alertmanager:rejected"] >= 2
    logged = w.tail(10**8).count("dead letter on ")
    assert logged <= 10, logged
