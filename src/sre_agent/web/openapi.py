"""The OpenAPI 3.1 document of the agent's HTTP interface, served at ``/openapi.json``.

Schemas come from the pydantic response models (:mod:`sre_agent.readmodel.views`)
so they cannot drift from what the endpoints return. The document lists only
routes the running app has registered: endpoints of other stages (approvals,
baselines, webhooks) appear with their methods and a generic description.

Examples
--------
>>> doc = build_openapi({"/api/incidents": {"GET"}, "/api/approvals/pending": {"GET"}})
>>> sorted(doc["paths"])
['/api/approvals/pending', '/api/incidents']
>>> ok = doc["paths"]["/api/incidents"]["get"]["responses"]["200"]
>>> ok["content"]["application/json"]["schema"]
{'$ref': '#/components/schemas/IncidentPage'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ..readmodel import views as v

__all__ = ["build_openapi"]

REF = "#/components/schemas/{model}"
JSON = "application/json"

#: models in the components section: (model, mode)
MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (v.ErrorBody, "serialization"),
    (v.StatusSummary, "serialization"),
    (v.Whoami, "serialization"),
    (v.AnomalyPage, "serialization"),
    (v.PredictionPage, "serialization"),
    (v.IncidentPage, "serialization"),
    (v.IncidentDetail, "serialization"),
    (v.FeedbackRequest, "validation"),
    (v.FeedbackAccepted, "serialization"),
    (v.PatternResults, "serialization"),
    (v.AuditPage, "serialization"),
    (v.SeriesList, "serialization"),
    (v.SeriesPoints, "serialization"),
    (v.TriageRequest, "validation"),
    (v.TriageAccepted, "serialization"),
    (v.SilenceRequest, "validation"),
    (v.SilenceView, "serialization"),
    (v.SilencePage, "serialization"),
    (v.RunbookView, "serialization"),
    (v.DetectRequest, "validation"),
    (v.DetectResult, "serialization"),
    (v.LearnRequest, "validation"),
    (v.LearnAccepted, "serialization"),
]


def _q(name: str, desc: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": desc,
        "schema": schema,
    }


PAGE = [
    _q("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
    _q("offset", "items to skip", {"type": "integer", "minimum": 0, "default": 0}),
]
HOURS = _q(
    "hours",
    "only items from the last N hours",
    {"type": "number", "exclusiveMinimum": 0, "maximum": 720},
)
SERVICE = _q("service", "only this service", {"type": "string"})

#: (path, method) -> (summary, role or None, params, request model, response model, status)
OPS: dict[
    tuple[str, str], tuple[str, str | None, list[dict[str, Any]], str | None, str | None, int]
] = {
    ("/api/status", "get"): (
        "Summary: open incidents, anomalies, plans, actions, agent health",
        "viewer",
        [],
        None,
        "StatusSummary",
        200,
    ),
    ("/api/whoami", "get"): ("The caller's user and role", "viewer", [], None, "Whoami", 200),
    ("/api/anomalies", "get"): (
        "Anomalies (metric and log), newest first",
        "viewer",
        [
            {**HOURS, "schema": {**HOURS["schema"], "default": 24}},
            SERVICE,
            _q("status", "open or resolved", {"type": "string", "enum": ["open", "resolved"]}),
            *PAGE,
        ],
        None,
        "AnomalyPage",
        200,
    ),
    ("/api/predictions", "get"): (
        "Latest early warnings per series, soonest breach first",
        "viewer",
        [HOURS, SERVICE, *PAGE],
        None,
        "PredictionPage",
        200,
    ),
    ("/api/incidents", "get"): (
        "Incidents, most recently updated first",
        "viewer",
        [
            _q(
                "status",
                "open (open or updated), resolved or all",
                {"type": "string", "enum": ["open", "resolved", "all"], "default": "all"},
            ),
            SERVICE,
            _q(
                "severity",
                "only this severity",
                {"type": "string", "enum": ["info", "warning", "critical"]},
            ),
            _q("q", "text in the id, title, services, cause or assignee",
               {"type": "string", "maxLength": 200}),
            _q("since", "active at or after (unix seconds)", {"type": "number"}),
            _q("until", "opened at or before (unix seconds)", {"type": "number"}),
            HOURS,
            *PAGE,
        ],
        None,
        "IncidentPage",
        200,
    ),
    ("/api/incidents/{incident_id}/{action}", "post"): (
        "Triage: ack, unack, assign, snooze, resolve or comment (-> incident-triage topic)",
        "operator",
        [
            {"name": "incident_id", "in": "path", "required": True,
             "description": "incident id or a unique prefix", "schema": {"type": "string"}},
            {"name": "action", "in": "path", "required": True, "description": "what to do",
             "schema": {"type": "string",
                        "enum": ["ack", "unack", "assign", "snooze", "resolve", "comment"]}},
        ],
        "TriageRequest",
        "TriageAccepted",
        202,
    ),
    ("/api/silences", "get"): (
        "Silences and maintenance windows (active, or all with state=all)",
        "viewer",
        [_q("state", "active (default) or all", {"type": "string", "enum": ["active", "all"]}),
         *PAGE],
        None,
        "SilencePage",
        200,
    ),
    ("/api/silences", "post"): (
        "Create a silence or maintenance window (-> silences topic, compacted)",
        "operator",
        [],
        "SilenceRequest",
        "SilenceView",
        201,
    ),
    ("/api/silences/{silence_id}", "delete"): (
        "Expire a silence now",
        "operator",
        [{"name": "silence_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        None,
        "SilenceView",
        200,
    ),
    ("/api/patterns/detect", "post"): (
        "Detect anomalies in a given series (or what the detectors see now) and match "
        "patterns, past incidents and runbooks",
        "viewer",
        [],
        "DetectRequest",
        "DetectResult",
        200,
    ),
    ("/api/patterns/learn", "post"): (
        "Teach the knowledge base a pattern (title, symptoms, root causes, solutions)",
        "operator",
        [],
        "LearnRequest",
        "LearnAccepted",
        201,
    ),
    ("/api/runbooks/{runbook_id}", "get"): (
        "A runbook (Markdown) the RCA named",
        "viewer",
        [{"name": "runbook_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        None,
        "RunbookView",
        200,
    ),
    ("/api/incidents/{incident_id}", "get"): (
        "One incident with its timeline, RCA evidence, action plans, votes and results",
        "viewer",
        [
            {
                "name": "incident_id",
                "in": "path",
                "required": True,
                "description": "incident id or a unique prefix (4+ characters)",
                "schema": {"type": "string"},
            }
        ],
        None,
        "IncidentDetail",
        200,
    ),
    ("/api/feedback", "post"): (
        "Feedback on an incident's RCA or action (-> feedback topic)",
        "operator",
        [],
        "FeedbackRequest",
        "FeedbackAccepted",
        202,
    ),
    ("/api/patterns/search", "get"): (
        "Similar past incidents, patterns and runbooks",
        "viewer",
        [
            _q("q", "text to search for", {"type": "string", "maxLength": 500}, required=True),
            _q("limit", "results", {"type": "integer", "minimum": 1, "maximum": 50, "default": 5}),
        ],
        None,
        "PatternResults",
        200,
    ),
    ("/api/audit", "get"): (
        "Audit records, newest first",
        "operator",
        [
            _q("subject", "plan/incident/action id", {"type": "string"}),
            _q("actor", "stage or user", {"type": "string"}),
            _q("action", "action prefix, e.g. plan.", {"type": "string"}),
            *PAGE,
        ],
        None,
        "AuditPage",
        200,
    ),
    ("/api/series", "get"): (
        "Series tracked for charts (those with anomalies)",
        "viewer",
        [SERVICE],
        None,
        "SeriesList",
        200,
    ),
    ("/api/series/points", "get"): (
        "Recent values of a series with its learned band",
        "viewer",
        [
            _q("series", "series id from /api/series", {"type": "string"}, required=True),
            _q("since", "unix seconds", {"type": "number"}),
        ],
        None,
        "SeriesPoints",
        200,
    ),
}

#: endpoints of this stage that are not JSON or not token-authenticated
SPECIAL: dict[tuple[str, str], dict[str, Any]] = {
    ("/openapi.json", "get"): {
        "summary": "This document",
        "responses": {
            "200": {
                "description": "OpenAPI 3.1 document",
                "content": {JSON: {"schema": {"type": "object"}}},
            }
        },
    },
    ("/metrics", "get"): {
        "summary": "Prometheus metrics about the agent itself",
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    },
    ("/status", "get"): {
        "summary": "Worker health, lag, tables, counters (always 200; the probes are below)",
        "responses": {
            "200": {"description": "status", "content": {JSON: {"schema": {"type": "object"}}}}
        },
    },
    ("/livez", "get"): {
        "summary": "Liveness probe: 503 only when the Faust app or its consumer thread crashed",
        "responses": {
            "200": {"description": "live", "content": {JSON: {"schema": {"type": "object"}}}},
            "503": {"description": "crashed; reasons listed",
                    "content": {JSON: {"schema": {"type": "object"}}}},
        },
    },
    ("/readyz", "get"): {
        "summary": "Readiness probe: 503 while recovering, without a group coordinator "
        "(broker unreachable) or with a stalled stage",
        "responses": {
            "200": {"description": "ready", "content": {JSON: {"schema": {"type": "object"}}}},
            "503": {"description": "not ready; reasons listed",
                    "content": {JSON: {"schema": {"type": "object"}}}},
        },
    },
    ("/slack/commands", "post"): {
        "summary": "Slack slash command /sre (status, incidents, rca, pattern search, approve, "
        "reject, feedback, fix); verified with the Slack signing secret",
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "user_id": {"type": "string"},
                            "user_name": {"type": "string"},
                            "command": {"type": "string"},
                        },
                    }
                }
            },
        },
        "parameters": [
            {
                "name": "X-Slack-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "name": "X-Slack-Request-Timestamp",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "Block Kit reply",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            "401": {
                "description": "bad or missing signature",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            },
        },
    },
    ("/", "get"): {
        "summary": "Web console",
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
    },
    ("/console", "get"): {
        "summary": "Web console",
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
    },
}

#: other stages' endpoints, by path prefix -> description
FOREIGN: dict[str, str] = {
    "/api/approvals": "Pending approvals and approve/reject votes (approval stage; bearer token)",
    "/api/baseline": "Learned baselines (cognition stage; see /api/baselines)",
    "/slack/interactions": "Slack interactive buttons (approval stage; Slack signature)",
    "/webhooks": "Inbound webhooks (ArgoCD, Alertmanager, n9e; webhook token)",
    "/api/v1/write": "Prometheus remote-write receiver (snappy protobuf; collectors stage)",
    "/api": "Endpoint of another stage",
}
EXCLUDE = ("/console/static",)
#: foreign endpoints known to take the API's bearer tokens
BEARER = ("/api/approvals", "/api/baseline")


def _err(desc: str) -> dict[str, Any]:
    return {
        "description": desc,
        "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorBody")}}},
    }


def _op(path: str, method: str) -> dict[str, Any]:
    summary, role, params, req, resp, status = OPS[(path, method)]
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_"),
        "parameters": params,
        "responses": {
            str(status): {
                "description": "OK",
                "content": {JSON: {"schema": {"$ref": REF.format(model=resp)}}},
            },
            "400": _err("bad query parameter or body"),
            "401": _err("missing or invalid token"),
            "403": _err(f"needs the {role} role"),
        },
    }
    if role:
        op["security"] = [{"bearerAuth": []}]
        op["description"] = f"Needs the `{role}` role (viewer < operator < approver < admin)."
    if req:
        op["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": REF.format(model=req)}}},
        }
        op["responses"]["413"] = _err("body too large")
        op["responses"]["415"] = _err("not JSON")
    if path.startswith("/api/incidents/{incident_id}"):
        op["responses"]["404"] = _err("unknown incident (or action)")
    if path == "/api/incidents/{incident_id}/{action}":
        op["responses"]["409"] = _err("the incident is already resolved")
        op["responses"]["503"] = _err("Kafka did not acknowledge it: retry")
        op["requestBody"]["required"] = False
    if path.startswith("/api/silences") and method != "get":
        op["responses"]["404" if "{" in path else "503"] = _err(
            "unknown silence" if "{" in path else "Kafka did not acknowledge it: retry")
        if "{" in path:
            op["responses"]["409"] = _err("already expired")
    if path in ("/api/patterns/detect", "/api/patterns/learn"):
        op["responses"]["503"] = _err("knowledge base not available")
    if path == "/api/runbooks/{runbook_id}":
        op["responses"]["404"] = _err("unknown runbook")
    if path == "/api/series/points":
        op["responses"]["404"] = _err("series not tracked")
    if path == "/api/patterns/search":
        op["responses"]["503"] = _err("knowledge base not available")
    return op


#: (path prefix, method) -> (success status, also answers 503 when ...) for the others
FOREIGN_STATUS: dict[tuple[str, str], tuple[int, str | None]] = {
    ("/webhooks", "post"): (202, "webhooks are not configured (no webhook token)"),
    ("/api/approvals/{plan_id}", "post"): (202, "Kafka did not acknowledge the vote: retry"),
    ("/api/baseline/learn", "post"): (202, None),
    ("/api/v1/write", "post"): (204, "not configured, buffer full or Kafka unavailable"),
    ("/slack", "post"): (200, "Slack is not configured (no signing secret)"),
}


def _foreign(path: str, method: str) -> dict[str, Any]:
    desc = next(d for p, d in FOREIGN.items() if path.startswith(p))
    status, unavailable = next((v for (p, m), v in FOREIGN_STATUS.items()
                                if m == method and path.startswith(p)), (200, None))
    ok: dict[str, Any] = {"description": "OK"}
    if status != 204:
        ok["content"] = {JSON: {"schema": {"type": "object"}}}
    op: dict[str, Any] = {
        "summary": desc,
        "responses": {
            str(status): ok,
            "4XX": _err("bad request or not authorized"),
        },
    }
    if unavailable:
        op["responses"]["503"] = _err(unavailable)
    params = [
        {"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for seg in path.split("/")
        if seg.startswith("{") and seg.endswith("}")
    ]
    if params:
        op["parameters"] = params
    if path.startswith(BEARER):
        op["security"] = [{"bearerAuth": []}]
    return op


def build_openapi(routes: Mapping[str, set[str]], version: str = "0") -> dict[str, Any]:
    """The document for the registered ``routes`` (path -> HTTP methods)."""
    _, top = models_json_schema(MODELS, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for path in sorted(routes):
        if path.startswith(EXCLUDE):
            continue
        for method in sorted(m.lower() for m in routes[path] if m not in ("HEAD", "OPTIONS")):
            if (path, method) in OPS:
                op = _op(path, method)
            elif (path, method) in SPECIAL:
                op = SPECIAL[(path, method)]
            elif any(path.startswith(p) for p in FOREIGN):
                op = _foreign(path, method)
            else:
                continue  # Faust's own pages (/router, /table ...)
            paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SRE Agent API",
            "version": version,
            "description": "Read side (CQRS) of the SRE agent: incidents, RCA, plans, "
            "anomalies, predictions, feedback, audit. Tokens map to roles "
            "viewer < operator < approver < admin.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
