"""No one let in: authentication, roles, webhook secrets, and no secret leaking out.

One worker with every secret configured (API tokens per role, webhook token,
Slack signing secret, a PostgreSQL DSN with a password):

- every API route refuses anonymous and bad tokens (401); the only open pages
  are ``/status``, the Prometheus scrape ``/metrics``, the API description and
  the static console shell (which calls the API with the user's token);
- Faust's built-in pages (``/table/..`` would serve table contents, ``/router``
  the cluster's topology) are not reachable without auth;
- role checks: viewers and operators cannot vote, viewers cannot send feedback
  or read the audit trail;
- webhooks and the remote-write receiver need the webhook token; Slack
  endpoints need a valid, fresh signature (no replay);
- no secret appears in any open page or in the worker's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import make_worker
from tests.chaos.webclient import (
    ADMIN,
    APPROVER,
    OPERATOR,
    SECURE_ENV,
    SLACK_SECRET,
    VIEWER,
    WEBHOOK_TOKEN,
    fill,
    request,
    routes,
    slack_headers,
)
from tests.conftest import WorkerProcess, unique

pytestmark = pytest.mark.integration

PG_PASSWORD = "pg-Pa55w0rd-never-shown"
#: open by design: health, the kubelet's probes, the scrape endpoint, the API description,
#: the console shell
PUBLIC = {"/status", "/livez", "/readyz", "/metrics", "/openapi.json", "/", "/console",
          "/console/static/{name}"}
#: authenticated by their own secret, not by API tokens
OWN_SECRET = {"/webhooks/argocd", "/webhooks/alertmanager", "/webhooks/n9e", "/api/v1/write",
              "/slack/commands", "/slack/interactions"}
FAUST_BUILTINS = {"/router/", "/router/baselines/", "/router/baselines/k/", "/table/",
                  "/table/baselines/", "/table/baselines/k/", "/stats/", "/assignment/",
                  "/graph/", "/performance/"}
ROUTES = routes()


@pytest.fixture(scope="module")
def worker(kafka_broker: Any, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[WorkerProcess]:
    dsn = pg_dsn.replace("@", f":{PG_PASSWORD}@", 1)  # trust auth ignores it; it must not leak
    w = make_worker(kafka_broker, Path(tmp_path_factory.mktemp("sec")), unique("sec") + ".",
                    "sec", extra_env={**SECURE_ENV, "SRE_AGENT_POSTGRES__DSN": dsn})
    w.start()
    yield w
    w.stop()


def _call(w: WorkerProcess, method: str, route: str, headers: dict[str, str] | None = None,
          body: bytes | None = b"{}") -> Any:
    h = {"Content-Type": "application/json", **(headers or {})}
    return request(w.port, method, fill(route, ["p-unknown", "approve"]), body if method in (
        "POST", "PUT", "PATCH") else None, h)


API_ROUTES = sorted((r, m) for r, ms in ROUTES.items() for m in ms
                    if r not in PUBLIC | OWN_SECRET | FAUST_BUILTINS)


# Regression (streams/web.py /api/baselines; correlate_agent.py /api/correlation/stats):
# both answer without a token
@pytest.mark.parametrize(("route", "method"), API_ROUTES)
def test_api_routes_refuse_anonymous_and_bad_tokens(worker: WorkerProcess, route: str,
                                                    method: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"},
                    {"Authorization": f"Basic {ADMIN}"}, {"Authorization": f"Bearer {ADMIN}x"},
                    {"X-Webhook-Token": WEBHOOK_TOKEN}):
        r = _call(worker, method, route, headers)
        assert r.status == 401, (method, route, headers, r.status, r.body[:200])
    # and a valid token gets past authentication
    r = _call(worker, method, route, {"Authorization": f"Bearer {ADMIN}"})
    assert r.status not in (401, 403), (method, route, r.status, r.body[:200])


# Regression (streams/app.py): /router/* and /table/* are on by default in Faust;
# pass web_tables_enabled=False, web_router_enabled=False to faust.App
@pytest.mark.parametrize("route", sorted(FAUST_BUILTINS))
def test_faust_builtin_pages_are_not_open(worker: WorkerProcess, route: str) -> None:
    # /table/<name>/<key>/ serves table contents (approval state, baselines), /router the
    # URLs of every worker: they must be off (404) or behind auth
    r = request(worker.port, "GET", route)
    assert r.status in (401, 403, 404), (route, r.status, r.body[:300])


@pytest.mark.parametrize(("token", "allowed"), [(VIEWER, False), (OPERATOR, False),
                                                (APPROVER, True), (ADMIN, True)])
def test_only_approvers_may_vote(worker: WorkerProcess, token: str, allowed: bool) -> None:
    for decision in ("approve", "reject"):
        r = request(worker.port, "POST", f"/api/approvals/p-unknown/{decision}", b"{}",
                    {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if allowed:
            assert r.status == 404 and "unknown plan" in r.body.decode(), r.body  # got past roles
        else:
            assert r.status == 403, (token, decision, r.status, r.body)


@pytest.mark.parametrize(("method", "route", "role_needed"), [
    ("POST", "/api/feedback", "operator"), ("GET", "/api/audit", "operator")])
def test_role_checks_on_writes_and_the_audit_trail(worker: WorkerProcess, method: str,
                                                   route: str, role_needed: str) -> None:
    r = _call(worker, method, route, {"Authorization": f"Bearer {VIEWER}"})
    assert r.status == 403, (route, r.status, r.body)
    r = _call(worker, method, route, {"Authorization": f"Bearer {OPERATOR}"})
    assert r.status not in (401, 403), (route, r.status, r.body)


ALERT = json.dumps({"version": "4", "status": "firing", "receiver": "sre", "alerts": [
    {"status": "firing", "labels": {"alertname": "HighLatency", "service": "api"},
     "annotations": {}, "startsAt": "2025-11-13T02:13:20Z", "fingerprint": "f1"}]}).encode()


@pytest.mark.parametrize("route", ["/webhooks/alertmanager", "/webhooks/argocd", "/webhooks/n9e",
                                   "/api/v1/write"])
def test_webhooks_need_the_webhook_token(worker: WorkerProcess, route: str) -> None:
    # one gate (web/auth.py Gate.webhook) for every webhook: remote write had its own check,
    # which took a bare token without "Bearer " and refused the X-Webhook-Token header
    for headers in ({}, {"Authorization": f"Bearer {ADMIN}"},  # an API token is not enough
                    {"Authorization": "Bearer wrong"}, {"X-Webhook-Token": WEBHOOK_TOKEN + "x"},
                    {"Authorization": WEBHOOK_TOKEN}):
        r = request(worker.port, "POST", route, ALERT,
                    {"Content-Type": "application/json", **headers})
        assert r.status == 401, (route, headers, r.status, r.body[:200])
        assert r.headers.get("www-authenticate") == "Bearer", (route, headers)
    for headers in ({"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
                    {"X-Webhook-Token": WEBHOOK_TOKEN}):
        r = request(worker.port, "POST", route, ALERT, {"Content-Type": "application/json",
                                                        **headers})
        assert r.status != 401 and r.status < 500, (route, r.status, r.body[:300])


def test_webhooks_are_closed_without_a_webhook_token(worker_factory: Any) -> None:
    # no SRE_AGENT_API__WEBHOOK_TOKEN: nothing anonymous gets into the pipeline
    w = worker_factory().start()
    for route in ("/webhooks/alertmanager", "/webhooks/argocd", "/webhooks/n9e",
                  "/api/v1/write"):
        r = request(w.port, "POST", route, ALERT, {"Content-Type": "application/json"})
        assert r.status == 503 and b"SRE_AGENT_API__WEBHOOK_TOKEN" in r.body, (route, r.status)


@pytest.mark.parametrize("route", ["/slack/commands", "/slack/interactions"])
def test_slack_endpoints_need_a_fresh_valid_signature(worker: WorkerProcess, route: str) -> None:
    body = b"command=%2Fsre&text=status&user_id=U1&user_name=eve&channel_id=C1"
    bad = [
        {"Content-Type": "application/x-www-form-urlencoded"},  # unsigned
        slack_headers(body, secret="not-the-secret"),  # wrong secret
        slack_headers(body, ts=int(time.time()) - 600),  # replayed 10 minutes later
        slack_headers(body + b"&x=1"),  # signed another body
    ]
    for headers in bad:
        r = request(worker.port, "POST", route, body, headers)
        assert r.status == 401, (route, r.status, r.body[:200])
    r = request(worker.port, "POST", route, body, slack_headers(body, secret=SLACK_SECRET))
    assert r.status != 401 and r.status < 500, (route, r.status, r.body[:300])


def test_no_secret_in_open_pages_or_the_log(worker: WorkerProcess) -> None:
    secrets = [ADMIN, APPROVER, OPERATOR, VIEWER, WEBHOOK_TOKEN, SLACK_SECRET, PG_PASSWORD]
    # give the log some traffic with secrets in requests (rejected and accepted)
    request(worker.port, "GET", "/api/incidents", headers={"Authorization": f"Bearer {ADMIN}x"})
    request(worker.port, "POST", f"/webhooks/alertmanager?token={WEBHOOK_TOKEN}x", ALERT,
            {"Content-Type": "application/json"})
    for route in sorted(PUBLIC):
        r = request(worker.port, "GET", fill(route, ["app.js"]))
        text = r.body.decode("utf-8", "replace")
        leaked = [s for s in secrets if s in text]
        assert not leaked, (route, leaked)
    time.sleep(1.0)
    log = worker.tail(10**8)
    leaked = [s for s in secrets if s in log]
    assert not leaked, leaked
