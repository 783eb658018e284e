"""Incident tickets mirrored to Jira with the ``jira`` client library, against a local
server speaking Jira's REST API v2 (tests/standins/jira_server.py) and the real
PostgreSQL ticket table.

Defect of issue 16: ``tickets.backend`` was read nowhere and nothing constructed the
Jira back-end; with ``backend: jira`` no issue was ever created.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sre_agent.config import load_settings
from sre_agent.schemas import Incident
from sre_agent.sinks.audit import AuditStore
from sre_agent.sinks.tickets import JiraTickets, PostgresTickets
from sre_agent.streams.services import Services
from tests.standins.jira_server import JiraStandin

pytestmark = pytest.mark.integration

T = datetime(2025, 11, 13, 3, 0, tzinfo=UTC)


def incident(iid: str, status: str = "open", rev: int = 1, services: tuple[str, ...] = ("api",),
             severity: str = "warning") -> Incident:
    return Incident(incident_id=iid, title="api: errors up, token=ghp_" + "a" * 36,
                    fingerprint="f", opened_at=T, time=T + timedelta(seconds=rev),
                    status=status, revision=rev, services=list(services),  # type: ignore[arg-type]
                    severity=severity, severity_reasons=["evidence 0.99"],  # type: ignore[arg-type]
                    resolved_at=T + timedelta(minutes=12) if status == "resolved" else None,
                    resolved_by="api:otto" if status == "resolved" else None)


def jira_env(jira: JiraStandin, dsn: str) -> dict[str, str]:
    return {"SRE_AGENT_TICKETS__BACKEND": "jira", "SRE_AGENT_TICKETS__JIRA_URL": jira.url,
            "SRE_AGENT_TICKETS__JIRA_USER": jira.user,
            "SRE_AGENT_TICKETS__JIRA_TOKEN": jira.token,
            "SRE_AGENT_POSTGRES__DSN": dsn}


async def test_the_jira_backend_is_constructed_from_settings(pg_dsn: str) -> None:
    jira = await JiraStandin().start()
    try:
        services = Services(load_settings(env=jira_env(jira, pg_dsn)))
        assert isinstance(services.jira, JiraTickets)
        assert Services(load_settings(env={"SRE_AGENT_POSTGRES__DSN": pg_dsn})).jira is None
    finally:
        await jira.stop()


async def test_create_comment_transition_and_no_duplicate_after_a_lost_answer(pg_dsn: str) -> None:
    jira = await JiraStandin().start()
    store = AuditStore(pg_dsn)
    await store.setup()
    local = PostgresTickets(store)
    settings = load_settings(env=jira_env(jira, pg_dsn))
    mirror = JiraTickets(settings.tickets, console_url="http://agent/console#/incident/{incident_id}")
    iid = "jira-" + uuid.uuid4().hex[:8]
    try:
        inc = incident(iid)
        done = await mirror.mirror(inc, await local.upsert(inc), local)
        key = done["created"]
        assert await local.external_key(iid) == key
        issue = jira.issues[key]
        f = issue["fields"]
        assert f["summary"].startswith("[WARNING] api: errors up") and "ghp_" not in f["summary"]
        assert f["issuetype"]["name"] == "Task" and "sre-incident-" + iid in f["labels"]
        assert "console: http://agent/console#/incident/" + iid in f["description"]

        same = incident(iid, rev=2)  # nothing material: no comment
        assert await mirror.mirror(same, await local.upsert(same), local) == {}
        wider = incident(iid, rev=3, services=("api", "db"), severity="critical")
        assert await mirror.mirror(wider, await local.upsert(wider), local) == {"commented": key}
        assert "severity critical, services api, db" in issue["comments"][-1]["body"]

        done_inc = incident(iid, status="resolved", rev=4, services=("api", "db"))
        got = await mirror.mirror(done_inc, await local.upsert(done_inc), local)
        assert got == {"resolved": "resolve issue"} and issue["status"] == "Resolved"
        assert issue["comments"][-1]["body"] == "Resolved by api:otto after 12 min."

        # the create's answer was lost (key not stored): the next try finds it by label
        other = "jira-" + uuid.uuid4().hex[:8]
        first = incident(other)
        await local.upsert(first)
        fresh = JiraTickets(settings.tickets)
        created = await asyncio.to_thread(fresh._find_or_create, first)  # PostgreSQL missed it
        assert await local.external_key(other) is None
        again = await fresh.mirror(first, "updated", local)
        assert again == {"created": created} and jira.by_label("sre-incident-" + other) == [created]

        jira.fail_next = 1  # an outage is an exception for the caller (audited, retried)
        with pytest.raises(Exception, match="503"):
            await JiraTickets(settings.tickets).mirror(incident("jira-x" + uuid.uuid4().hex[:6]),
                                                       "created", local)
    finally:
        await store.close()
        await jira.stop()


async def test_worker_mirrors_incidents_to_jira(worker_factory, kafka_io, wait_for,
                                                pg_dsn: str) -> None:
    jira = await JiraStandin().start()
    w = worker_factory(extra_env=jira_env(jira, pg_dsn)).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    iid = "jira-w-" + uuid.uuid4().hex[:8]
    try:
        await kafka_io.send(pfx + "incidents", incident(iid))
        key = (await wait_for(lambda: jira.by_label("sre-incident-" + iid), timeout=60))[0]
        await kafka_io.send(pfx + "incidents", incident(iid, status="resolved", rev=2))
        await wait_for(lambda: jira.issues[key]["status"] == "Resolved", timeout=60)
        health = w.status()["health"]["jira"]
        assert health["ok"] and health["created"] == 1 and health["resolved"] == 1
    except BaseException:
        print(w.tail(10000))
        raise
    finally:
        w.stop()
        await jira.stop()
