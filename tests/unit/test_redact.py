"""Redaction before any LLM call: secrets, tokens, keys, passwords, IPs, e-mails."""

from __future__ import annotations

import pytest

from sre_agent.processors.redact import redact, redact_obj

CASES = [
    ("password=hunter2 and pwd: s3cr3t", ["hunter2", "s3cr3t"]),
    ('{"api_key": "abcd1234efgh", "token":"tok-999"}', ["abcd1234efgh", "tok-999"]),
    ("Authorization: Bearer abc.def.ghi-very-long-token", ["abc.def.ghi-very-long-token"]),
    ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='", ["dXNlcjpwYXNzd29yZA=="]),
    ("aws AKIAIOSFODNN7EXAMPLE secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI"]),
    ("slack xoxb-123456789012-abcdefghijkl", ["xoxb-123456789012-abcdefghijkl"]),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"]),
    ("anthropic sk-ant-api03-abcdefghijklmnopqrstuv", ["sk-ant-api03-abcdefghijklmnopqrstuv"]),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.SflKxwRJSMeKKF2QT4fwpM", ["eyJhbGciOiJIUzI1NiJ9"]),
    ("dsn postgres://app:pa55w0rd@db.internal:5432/orders", ["pa55w0rd", "app:pa55w0rd"]),
    ("from 10.0.12.7:8080 and 192.168.1.1/24", ["10.0.12.7", "192.168.1.1"]),
    ("ipv6 2001:db8:85a3::8a2e:370:7334 and fe80::1", ["2001:db8:85a3::8a2e:370:7334", "fe80::1"]),
    ("mail alice.smith+ops@corp.example.com now", ["alice.smith+ops@corp.example.com"]),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", ["MIIEow"]),
]


@pytest.mark.parametrize("text, secrets", CASES)
def test_secrets_are_removed(text: str, secrets: list[str]) -> None:
    out = redact(text)
    for s in secrets:
        assert s not in out, out
    assert "<redacted:" in out


@pytest.mark.parametrize("text", [
    "latency_p99 up 350 ms on api-7d9f8b6c4-xk2lp",
    "HighErrorRate for service checkout (5xx 12%)",
    "incident 4f9a1c2b3d4e5f6a7b8c9d0e revision 9f8e7d6",
    "time 12:30:45 ratio 3:1 cpu 0.93",
    "deploy of api to v8 by alice",
])
def test_ordinary_evidence_is_kept(text: str) -> None:
    assert redact(text) == text


def test_idempotent_and_empty() -> None:
    t = "token=abc123456 from 10.1.1.1 by a@b.io"
    assert redact(redact(t)) == redact(t)
    assert redact("") == ""


def test_redact_obj_walks_nested_data_without_mutating() -> None:
    data = {"incident": {"notes": ["from 10.0.0.1", {"Password": "x", "n": 1.5}]},
            "headers": {"Authorization": "Bearer zzz", "X-Api-Key": "k"},
            "tuple": ("a@b.io", None, True), "client_secret": ""}
    out = redact_obj(data)
    assert out["incident"]["notes"][0] == "from <redacted:ip>"
    assert out["incident"]["notes"][1] == {"Password": "<redacted:secret>", "n": 1.5}
    assert out["headers"] == {"Authorization": "<redacted:secret>", "X-Api-Key": "<redacted:secret>"}
    assert out["tuple"] == ("<redacted:email>", None, True)
    assert out["client_secret"] == ""
    assert data["headers"]["Authorization"] == "Bearer zzz"  # input untouched


def test_redact_obj_depth_limit() -> None:
    deep: dict = {}
    cur = deep
    for _ in range(50):
        cur["x"] = {}
        cur = cur["x"]
    out = redact_obj(deep, max_depth=5)
    for _ in range(6):
        out = out["x"]
    assert out == "<redacted:too_deep>"


# ---- the rules' gates skip only what cannot match (issue 18: redaction was a third
# of a remote-write worker's CPU, 150 µs per series key)
_PIECES = ["password", "PassWD", "pwd", "secret", "Token", "api_key", "Api-Key", "access-key",
           "private_key", "client_secret", "session_id", "cookie", "credentials", "Bearer",
           "basic", "--", "--password", "://", "@", "eyJ", "AKIA", "ASIA", "sk-", "sk-ant-",
           "xoxb-", "ghp_", "glpat-", "AIza", "-----BEGIN ", "PRIVATE KEY-----", "=", ":", " ",
           "\"", "'", "\n", "10.0.0.1", "::", "a@b.io", "x", "ABCDEFGHIJ", "abcdefghij",
           "0123456789", "/+", "\u017f", "\u212a", "\u0131", "\u00e9", "PA\u017f\u017fWORD",
           "to\u212aen", "{", "}", ",", "_", "."]


def _every_rule(text: str, personal: bool) -> str:
    from sre_agent.processors.redact import _RULES, PERSONAL_FROM

    for pattern, repl in (_RULES if personal else _RULES[:PERSONAL_FROM]):
        text = pattern.sub(repl, text)
    return text


def test_gated_rules_redact_exactly_what_every_rule_does() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=3000, deadline=None, database=None)
    @given(st.lists(st.sampled_from(_PIECES), max_size=24), st.booleans())
    def check(pieces: list[str], personal: bool) -> None:
        text = "".join(pieces)
        assert redact(text, personal) == _every_rule(text, personal)

    check()


@pytest.mark.parametrize("text", [
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "PA\u017f\u017fWORD=hunter2",
    "to\u212aen: abcdefgh12", "Bearer abcdefghijk", "--client-secret=x1 --token y",
    "http_requests_total{instance=\"10.0.3.17:9100\",job=\"node\",pod=\"api-1\"}",
])
def test_gated_rules_on_known_cases(text: str) -> None:
    assert redact(text) == _every_rule(text, True)
    assert redact(text, personal=False) == _every_rule(text, False)
