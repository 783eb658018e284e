"""HTTP helpers for the web fuzz and security tests: a module-scoped worker with
auth configured, route discovery, raw requests, Slack signatures, RSS."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from sre_agent.config import load_settings
from tests.conftest import WorkerProcess, unique

from .support import make_worker

__all__ = [
    "ADMIN", "APPROVER", "OPERATOR", "VIEWER", "WEBHOOK_TOKEN", "SLACK_SECRET", "SECURE_ENV",
    "Reply", "request", "routes", "rss_kib", "secure_worker", "slack_headers",
]

ADMIN, APPROVER, OPERATOR, VIEWER = "tok-admin-9f2c", "tok-approver-41ab", "tok-op-77d1", "tok-view-0c3e"
WEBHOOK_TOKEN = "whk-5be0c1d2e3f4"
SLACK_SECRET = "slack-signing-8e1f2a"
SECURE_ENV = {
    "SRE_AGENT_API__TOKENS": orjson.dumps({
        ADMIN: "admin:root", APPROVER: "approver:alice", OPERATOR: "operator:olga",
        VIEWER: "viewer:victor"}).decode(),
    "SRE_AGENT_API__WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    "SRE_AGENT_SLACK__SIGNING_SECRET": SLACK_SECRET,
}


@pytest.fixture(scope="module")
def secure_worker(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[WorkerProcess]:
    """One worker for the whole module, with API tokens, webhook token and Slack secret."""
    w = make_worker(kafka_broker, Path(tmp_path_factory.mktemp("web")), unique("web") + ".",
                    "web", extra_env=SECURE_ENV)
    w.start()
    yield w
    w.stop()


def routes() -> dict[str, list[str]]:
    """Every web path the app declares (views of all stages) with the methods its
    view implements, plus Faust's built-in pages."""
    from faust.web import View

    from sre_agent.streams import create_app

    app, _ctx = create_app(load_settings(env={}))
    out: dict[str, list[str]] = {}
    for path, view in sorted(app.web.views.items()):
        cls = view if isinstance(view, type) else type(view)
        out[path] = [m.upper() for m in ("get", "post", "put", "patch", "delete")
                     if getattr(cls, m, None) is not getattr(View, m, None)] or ["GET"]
    for b in ("/router/", "/router/baselines/", "/router/baselines/k/", "/table/",
              "/table/baselines/", "/table/baselines/k/", "/stats/", "/assignment/", "/graph/",
              "/performance/"):
        out.setdefault(b, ["GET"])
    return out


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)


def request(base_port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 15.0) -> Reply:
    """One raw HTTP request (no client-side validation of what we send).

    A server may answer (401, 413, ...) and close before a big body is sent whole;
    writing on then fails (EPIPE/ECONNRESET) although the answer is already here:
    it is read. Only a connection that closed without an answer fails.
    """
    conn = http.client.HTTPConnection("127.0.0.1", base_port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError) as exc:
            try:
                r = conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise exc from None
        else:
            r = conn.getresponse()
        data = r.read(4 * 2**20)
        return Reply(r.status, data, {k.lower(): v for k, v in r.getheaders()})
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def slack_headers(body: bytes, secret: str = SLACK_SECRET, ts: int | None = None) -> dict[str, str]:
    """Headers of a request signed like Slack does (v0 HMAC-SHA256 of ts:body)."""
    ts = int(time.time()) if ts is None else ts
    base = b"v0:" + str(ts).encode() + b":" + body
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded"}


def fill(path: str, values: list[str]) -> str:
    """Replace ``{param}`` segments by (url-quoted) values, in order."""
    out, i = [], 0
    for seg in path.split("/"):
        if seg.startswith("{") and seg.endswith("}"):
            out.append(urllib.parse.quote(values[i % len(values)], safe=""))
            i += 1
        else:
            out.append(seg)
    return "/".join(out)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
