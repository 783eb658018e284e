"""``sre-agent publish deploy`` (ArgoCD PostSync hook job) produces to the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sre_agent.cli import main
from tests.conftest import unique

pytestmark = pytest.mark.integration


async def test_publish_deploy_produces_a_validated_event(kafka_broker, kafka_io, capsys,
                                                         tmp_path: Path) -> None:
    pfx = unique("pub") + "."
    env = {"SRE_AGENT_KAFKA__BROKER": kafka_broker.url, "SRE_AGENT_KAFKA__TOPIC_PREFIX": pfx,
           "SRE_AGENT_WORKER__LOG_JSON": "false"}
    code = await asyncio.to_thread(main, [
        "publish", "deploy", "--app", "payments", "--revision", "abc123", "--image",
        "payments:1.4.2", "--author", "alice", "--namespace", "prod"], env)
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    payload = tmp_path / "argocd.json"
    payload.write_text(json.dumps({"app": {"metadata": {"name": "ledger", "labels": {
        "app.kubernetes.io/name": "ledger-api"}}, "spec": {"destination": {"namespace": "fin"}},
        "status": {"sync": {"status": "Synced", "revision": "r2"}, "health": {"status": "Healthy"},
                   "summary": {"images": ["ledger:2"]}, "history": [{"revision": "r1"},
                                                                   {"revision": "r2"}],
                   "operationState": {"finishedAt": "2026-01-01T00:00:00Z", "operation": {
                       "initiatedBy": {"username": "bob"}}}}}}))
    assert await asyncio.to_thread(main, ["publish", "deploy", "--json", str(payload)], env) == 0
    got = await kafka_io.read(pfx + "deploy-events", until=lambda ms: len(ms) >= 2, timeout=30)
    by_app = {m["app"]: m for m in got}
    assert by_app["payments"]["event_id"] == printed["event_id"]
    assert by_app["payments"]["images"] == ["payments:1.4.2"]
    assert by_app["payments"]["namespace"] == "prod" and by_app["payments"]["author"] == "alice"
    led = by_app["ledger"]
    assert (led["service"], led["revision"], led["previous_revision"], led["author"]) == (
        "ledger-api", "r2", "r1", "bob")


def test_publish_rejects_bad_input(capsys, tmp_path: Path) -> None:
    assert main(["publish", "deploy", "--revision", "x"], env={}) == 2
    assert "--app is required" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["publish", "deploy", "--json", str(bad)], env={}) == 2
    assert "invalid JSON" in capsys.readouterr().err
    assert main(["publish", "deploy", "--app", "a", "--time", "yesterday", "--dry-run"], env={}) == 2
    assert "bad timestamp" in capsys.readouterr().err
    assert main(["publish", "deploy", "--app", "a", "--dry-run"], env={}) == 0
    assert json.loads(capsys.readouterr().out)["service"] == "a"
