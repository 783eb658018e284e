"""A local stand-in for Jira's REST API v2, driven by the real ``jira`` client library.

Implements what the ticket back-end uses, with Jira's shapes and errors:

* ``GET /rest/api/2/serverInfo``, ``GET /rest/api/2/myself``, ``GET /rest/api/2/field``;
* ``POST /rest/api/2/issue`` — ``fields.project.key``, ``fields.summary`` and
  ``fields.issuetype.name`` required (``400 {"errorMessages": [], "errors": {...}}``
  otherwise), answers ``201 {"id", "key", "self"}``; ``labels`` kept;
* ``GET /rest/api/2/issue/{key}`` — the issue with ``fields.status.name`` and comments;
* ``POST /rest/api/2/issue/{key}/comment`` — ``201`` with the comment;
* ``GET /rest/api/2/issue/{key}/transitions`` — the workflow's transitions from the
  issue's status; ``POST`` with ``{"transition": {"id"}}`` moves it (``204``), an
  unknown id is ``400``;
* ``GET /rest/api/2/search?jql=labels = "x"`` — issues with that label (the only JQL
  the back-end sends).

HTTP Basic auth with the configured user and API token; anything else is ``401``.
"""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import serve

__all__ = ["JiraStandin"]

#: the workflow: status -> transitions (id, name, to)
WORKFLOW = {
    "Open": [("11", "Start Progress", "In Progress"), ("21", "Resolve Issue", "Resolved")],
    "In Progress": [("21", "Resolve Issue", "Resolved")],
    "Resolved": [("31", "Reopen Issue", "Open")],
}


@dataclass
class JiraStandin:
    user: str = "sre-bot@example.com"
    token: str = "jira-api-token-1"
    project: str = "OPS"
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: answer 503 to the next N requests (an outage)
    fail_next: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(10001))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _authorized(self, request: web.Request) -> bool:
        want = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {want}"

    @web.middleware
    async def _mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"errorMessages": ["Service Unavailable"]}, status=503)
        if not self._authorized(request):
            return web.json_response({"errorMessages": ["You are not authenticated."]}, status=401)
        return await handler(request)

    def _issue(self, key: str) -> dict[str, Any]:
        i = self.issues[key]
        return {"id": i["id"], "key": key, "self": f"{self.url}/rest/api/2/issue/{i['id']}",
                "fields": {**i["fields"], "status": {"name": i["status"]},
                           "comment": {"comments": i["comments"], "total": len(i["comments"])}}}

    async def _server_info(self, request: web.Request) -> web.Response:
        return web.json_response({"baseUrl": self.url, "version": "9.12.0",
                                  "deploymentType": "Server", "serverTitle": "Jira stand-in"})

    async def _fields(self, request: web.Request) -> web.Response:
        names = ("summary", "description", "issuetype", "project", "labels", "status", "comment")
        return web.json_response([{"id": n, "key": n, "name": n.capitalize(), "custom": False,
                                   "navigable": True, "searchable": True,
                                   "clauseNames": [n], "schema": {"type": "string", "system": n}}
                                  for n in names])

    async def _myself(self, request: web.Request) -> web.Response:
        return web.json_response({"name": self.user, "emailAddress": self.user})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        f = body.get("fields") or {}
        errors = {}
        if (f.get("project") or {}).get("key") != self.project:
            errors["project"] = "valid project is required"
        if not f.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if not (f.get("issuetype") or {}).get("name"):
            errors["issuetype"] = "valid issue type is required"
        if len(f.get("summary") or "") > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        if errors:
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        iid = str(next(self._ids))
        key = f"{self.project}-{len(self.issues) + 1}"
        self.issues[key] = {"id": iid, "fields": f, "status": "Open", "comments": []}
        return web.json_response({"id": iid, "key": key,
                                  "self": f"{self.url}/rest/api/2/issue/{iid}"}, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.issues:
            return web.json_response({"errorMessages": ["Issue Does Not Exist"], "errors": {}},
                                     status=404)
        return web.json_response(self._issue(key))

    async def _comment(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.issues:
            return web.json_response({"errorMessages": ["Issue Does Not Exist"]}, status=404)
        body = await request.json()
        if not body.get("body"):
            return web.json_response({"errorMessages": [], "errors": {"comment": "required"}},
                                     status=400)
        c = {"id": str(next(self._ids)), "body": body["body"],
             "author": {"name": self.user}, "self": f"{self.url}/comment"}
        self.issues[key]["comments"].append(c)
        return web.json_response(c, status=201)

    async def _transitions(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.issues:
            return web.json_response({"errorMessages": ["Issue Does Not Exist"]}, status=404)
        issue = self.issues[key]
        avail = WORKFLOW.get(issue["status"], [])
        if request.method == "GET":
            return web.json_response({"transitions": [
                {"id": i, "name": n, "to": {"name": to}} for i, n, to in avail]})
        body = await request.json()
        tid = str((body.get("transition") or {}).get("id"))
        for i, _, to in avail:
            if i == tid:
                issue["status"] = to
                return web.Response(status=204)
        return web.json_response({"errorMessages": [
            f"Transition id '{tid}' is not valid for this issue."], "errors": {}}, status=400)

    async def _search(self, request: web.Request) -> web.Response:
        jql = request.query.get("jql", "")
        m = re.fullmatch(r'\s*labels\s*=\s*"([^"]+)"\s*', jql)
        if not m:
            return web.json_response({"errorMessages": [f"unsupported JQL: {jql}"]}, status=400)
        hits = [self._issue(k) for k, i in self.issues.items()
                if m.group(1) in (i["fields"].get("labels") or [])]
        return web.json_response({"startAt": 0, "maxResults": 50, "total": len(hits),
                                  "issues": hits})

    def by_label(self, label: str) -> list[str]:
        return [k for k, i in self.issues.items() if label in (i["fields"].get("labels") or [])]

    async def start(self) -> JiraStandin:
        app = web.Application(middlewares=[self._mw])
        r = app.router
        r.add_get("/rest/api/2/serverInfo", self._server_info)
        r.add_get("/rest/api/2/myself", self._myself)
        r.add_get("/rest/api/2/field", self._fields)
        r.add_post("/rest/api/2/issue", self._create)
        r.add_get("/rest/api/2/issue/{key}", self._get)
        r.add_post("/rest/api/2/issue/{key}/comment", self._comment)
        r.add_get("/rest/api/2/issue/{key}/transitions", self._transitions)
        r.add_post("/rest/api/2/issue/{key}/transitions", self._transitions)
        r.add_get("/rest/api/2/search", self._search)
        self._runner, self.port = await serve(app, self.host, self.port or None)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
