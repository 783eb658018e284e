"""API pieces without a broker: OpenAPI, /metrics exposition, ChatOps grammar and replies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.models.blocks import Block

from sre_agent.config import load_settings
from sre_agent.readmodel import CommandError, ReadModel, blocks, parse_command
from sre_agent.readmodel.chatops import COMMANDS, allowed, slack_role
from sre_agent.schemas import SimilarCase
from sre_agent.web.metrics import render
from sre_agent.web.openapi import OPS, build_openapi
from sre_agent.streams.app import create_app
from tests.api_support import incident_events

T = datetime(2025, 11, 13, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def app_ctx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    env = {
        "SRE_AGENT_API__TOKENS": '{"t": "admin"}',
        "SRE_AGENT_WORKER__DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    return create_app(load_settings(env=env))


def test_openapi_document_is_valid_and_lists_every_route(app_ctx) -> None:  # type: ignore[no-untyped-def]
    app, _ = app_ctx
    routes = {path: set(view.get_methods()) for path, view in app.web.views.items()}
    doc = build_openapi(routes, "1.2.3")
    validate(doc)
    for path, method in OPS:
        assert method in doc["paths"][path], path
    assert "/console/static/{name}" not in doc["paths"]
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert all(op["responses"] for op in ops)
    ids = [op["operationId"] for op in ops if "operationId" in op]
    assert len(ids) == len(set(ids))
    # every $ref resolves to a component
    import json

    text = json.dumps(doc)
    for name in doc["components"]["schemas"]:
        assert f'"#/components/schemas/{name}"' in text or name in ("ErrorBody",)
    for ref in {r.split('"')[0] for r in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in doc["components"]["schemas"], ref


def test_openapi_keeps_out_routes_that_are_not_registered() -> None:
    doc = build_openapi({"/api/incidents": {"GET", "HEAD"}, "/router": {"GET"}})
    validate(doc)
    assert list(doc["paths"]) == ["/api/incidents"] and list(doc["paths"]["/api/incidents"]) == [
        "get"
    ]


def test_metrics_exposition_parses_and_reflects_the_read_model(app_ctx) -> None:  # type: ignore[no-untyped-def]
    _, ctx = app_ctx
    api = ctx.stages.api
    api.model.__init__()  # fresh
    for ev in incident_events("i1", now=T):
        api.model.update(ev)
    ctx.stats.events_in["metrics"] += 5
    ctx.stats.dlq["metrics"] += 2
    api.requests[("incidents", "2xx")] += 1
    text = render(ctx.stages.metrics_registry).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    val = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples
    }
    assert val[("sre_agent_events_in_total", (("topic", "metrics"),))] == 5
    assert val[("sre_agent_dlq_total", (("topic", "metrics"),))] == 2
    assert val[("sre_agent_readmodel_action_results", (("outcome", "dry_run"),))] == 1
    assert val[("sre_agent_incidents_open", ())] == 1
    assert val[("sre_agent_plans_pending", ())] == 0  # its result arrived
    assert val[("sre_agent_stage_latency_seconds_count", (("stage", "rca"),))] == 1
    assert val[("sre_agent_api_requests_total", (("code", "2xx"), ("endpoint", "incidents")))] == 1
    assert fams["sre_agent_stage_latency_seconds"].type == "histogram"


@pytest.mark.parametrize(
    ("text", "name", "ref", "rest", "rating"),
    [
        ("", "help", "", "", None),
        ("STATUS", "status", "", "", None),
        ("incidents", "incidents", "", "", None),
        ("rca abc123", "rca", "abc123", "", None),
        ("pattern search redis timeout spikes", "pattern_search", "", "redis timeout spikes", None),
        ("approve plan-1 go ahead", "approve", "plan-1", "go ahead", None),
        ("reject plan-1", "reject", "plan-1", "", None),
        ("feedback inc-1 BAD wrong service", "feedback", "inc-1", "wrong service", "bad"),
        ("fix inc-1", "fix", "inc-1", "", None),
    ],
)
def test_parse_command(text: str, name: str, ref: str, rest: str, rating: str | None) -> None:
    cmd = parse_command(text)
    assert (cmd.name, cmd.ref, cmd.text, cmd.rating) == (name, ref, rest, rating)


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("rca", "usage: rca <incident>"),
        ("pattern", "usage: pattern search"),
        ("pattern find x", "usage: pattern search"),
        ("feedback inc-1 great", "good|bad"),
        ("fix", "usage: fix"),
        ("deploy prod", "unknown command 'deploy'"),
    ],
)
def test_parse_command_errors(text: str, msg: str) -> None:
    with pytest.raises(CommandError, match=msg):
        parse_command(text)


def test_roles() -> None:
    roles = {"U1": "sre", "alice": "lead", "U3": "superuser"}
    assert slack_role(roles, "U1") == "sre"
    # issue 15: roles by Slack user id only; a user *named* alice gets nothing
    assert slack_role(roles, "U9") is None and slack_role(roles, "alice") == "lead"
    assert slack_role(roles, "U3") is None and slack_role({"*": "viewer"}, "U7") == "viewer"
    for cmd in COMMANDS:
        assert allowed(cmd, "admin")
    assert not allowed("fix", "viewer") and not allowed("feedback", None)
    # issue 15: read commands need a mapped role (slack.read_role, default viewer)
    for cmd in ("rca", "incidents", "status", "pattern_search"):
        assert not allowed(cmd, None) and allowed(cmd, "viewer") and allowed(cmd, None, "any")
    assert allowed("help", None)


def _valid_blocks(reply: dict) -> None:
    assert reply["response_type"] in ("ephemeral", "in_channel") and reply["text"]
    for b in reply["blocks"]:
        Block.parse(b).validate_json()  # slack_sdk's Block Kit model checks


def test_block_kit_replies_are_valid() -> None:
    rm = ReadModel()
    for ev in incident_events("i1", now=T):
        rm.update(ev)
    _valid_blocks(blocks.status(rm.summary(), "ok"))
    items = rm.incidents(status="open")
    _valid_blocks(blocks.incident_list(items, len(items)))
    _valid_blocks(blocks.incident_list([], 0))
    d = rm.incident("i1")
    assert d is not None
    r = blocks.rca(d)
    _valid_blocks(r)
    assert "bad_deploy" in r["blocks"][2]["text"]["text"]
    _valid_blocks(
        blocks.patterns(
            "db <pool>",
            [
                SimilarCase(
                    id="c1",
                    title="pool exhausted & retry storm",
                    similarity=0.8,
                    cause_type="db_pool",
                )
            ],
        )
    )
    _valid_blocks(blocks.patterns("x", []))
    long = blocks.reply("x" * 5000)
    _valid_blocks(long)
    assert len(long["blocks"][0]["text"]["text"]) <= 3000
