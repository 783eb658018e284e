"""Redaction of secrets (everywhere) and personal data (before an LLM).

Secrets are redacted at the source: every input event is scrubbed when it is
decoded, before template mining or any other stage sees it, and every event the
agent produces is scrubbed once more on its way to a topic
(:func:`scrub_event`, secrets only: addresses stay usable for correlation). The
LLM gets the full treatment, personal data included (:func:`redact_obj`).

:func:`redact` replaces, in free text, private keys, cloud/API tokens, JWTs,
bearer/basic credentials, ``password=``-style assignments, credentials in URLs,
e-mail addresses and IPv4/IPv6 addresses with ``<redacted:KIND>`` markers.
:func:`redact_obj` walks dicts/lists/tuples (JSON-like data), redacting every
string and dropping the whole value of keys that name a secret (``password``,
``token``, ``api_key``, ``authorization`` ...). Both are pure and idempotent.

Examples
--------
>>> redact("login bob@example.com from 10.1.2.3 with password=hunter2")
'login <redacted:email> from <redacted:ip> with password=<redacted:secret>'
>>> redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")
'Authorization: Bearer <redacted:token>'
>>> redact("key AKIAIOSFODNN7EXAMPLE in postgres://app:s3cret@db:5432/x")
'key <redacted:aws_key> in postgres://<redacted:credentials>@db:5432/x'
>>> redact_obj({"user": "a@b.io", "api_key": "xyz", "n": 3, "tags": ["10.0.0.1"]})
{'user': '<redacted:email>', 'api_key': '<redacted:secret>', 'n': 3, 'tags': ['<redacted:ip>']}
>>> redact(redact("ip 192.168.0.1")) == redact("ip 192.168.0.1")
True
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

__all__ = ["SECRET_KEY_NAMES", "redact", "redact_obj", "redact_secrets", "scrub_event",
           "scrub_model"]

_SECRET = "<redacted:secret>"

#: key names (lower-case, ``-``/``_`` ignored) whose values are always secret
SECRET_KEY_NAMES = frozenset({
    "password", "passwd", "pwd", "secret", "token", "apikey", "accesskey", "secretkey",
    "accesskeyid", "secretaccesskey", "authorization", "auth", "cookie", "setcookie",
    "privatekey", "clientsecret", "sessiontoken", "bearer", "credentials", "dsn",
    "webhooktoken", "signingsecret", "bottoken", "xapikey",
})

# order matters: the most specific patterns first
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
                re.S), "<redacted:private_key>"),
    # scheme://user:password@host -> keep scheme and host
    (re.compile(r"(?<=://)[^/\s:@<>]+:[^/\s@<>]+(?=@)"), "<redacted:credentials>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\b"), "<redacted:token>"),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"), "<redacted:aws_key>"),
    # an AWS secret access key's shape: 40 base64 characters, mixed case and digits, alone
    (re.compile(r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
                r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
     "<redacted:aws_secret>"),
    (re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}"), "<redacted:api_key>"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "<redacted:slack_token>"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), "<redacted:github_token>"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"), "<redacted:gitlab_token>"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), "<redacted:api_key>"),
    (re.compile(r"(?i)\b(Bearer|Basic|Token)\s+(?!<redacted)[A-Za-z0-9._~+/=-]{8,}"), r"\1 <redacted:token>"),
    # key=value / key: value / "key": "value" assignments of secret-named keys
    (re.compile(
        r"""(?ix)
        (\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key
                    |client[_-]?secret|session[_-]?id|cookie|credential)s?\b["']?\s*[:=]\s*["']?)
        (?!<redacted)([^\s"',;&}]+)"""), r"\1" + _SECRET),
    # command-line flags: --password VALUE, --client-secret=VALUE, -p is not matched
    (re.compile(
        r"""(?ix)
        (--[\w-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key
                    |credential)s?(?:\s+|=))
        (?!<redacted)(?!-)([^\s"',;&}]+)"""), r"\1" + _SECRET),
    # ---- personal data from here on (PERSONAL_FROM): redacted before the LLM only
    (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), "<redacted:email>"),
    (re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
                r"(?:/\d{1,2})?(?![\w.])"), "<redacted:ip>"),
    # IPv6: at least three groups with '::' or full eight groups
    (re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?!\w)(?!:[0-9A-Fa-f])"),
     "<redacted:ip>"),
    (re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?"
                r"(?![\w:])(?=[^\w]|$)"), "<redacted:ip>"),
]


#: index of the first personal-data rule (e-mail, IP addresses)
PERSONAL_FROM = next(i for i, (_, r) in enumerate(_RULES) if r == "<redacted:email>")

#: Per rule, text every match of it contains, checked before the rule runs (a
#: rule's regular expression can cost 100-300 µs on a 90-character series key,
#: the substring test well under 1 µs): ``(literals, False)`` in the text as it is,
#: ``(keywords, True)`` in the lower-cased text if it is ASCII (a case-insensitive
#: rule's keywords match exactly the lower-case forms there; any other text runs the
#: rule); ``((), 40)``: the text has at least 40 characters. None: the rule always
#: runs. The gates only skip rules that cannot match: the result is the same as
#: running every rule (``tests/unit/test_redact.py``).
_GATES: dict[int, tuple[tuple[str, ...], bool | int]] = {
    0: (("-----BEGIN ",), False),
    1: (("://",), False),
    2: (("eyJ",), False),
    3: (("AKIA", "ASIA", "AGPA", "AIDA", "AROA"), False),
    4: ((), 40),
    5: (("sk-",), False),
    6: (("xox",), False),
    7: (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), False),
    8: (("glpat-",), False),
    9: (("AIza",), False),
    10: (("bearer", "basic", "token"), True),
    11: (("pwd", "passw", "secret", "token", "key", "session", "cookie", "credential"), True),
    12: (("--",), False),
}
_GATED: list[tuple[re.Pattern[str], str, tuple[tuple[str, ...], bool | int] | None]] = [
    (pattern, repl, _GATES.get(i)) for i, (pattern, repl) in enumerate(_RULES)]


def redact(text: str, personal: bool = True) -> str:
    """Return ``text`` with secrets, tokens, keys (and, if ``personal``, e-mails and IP
    addresses) masked."""
    if not text:
        return text
    low = text.lower() if text.isascii() else None
    for pattern, repl, gate in (_GATED if personal else _GATED[:PERSONAL_FROM]):
        if gate is not None:
            words, how = gate
            if how is True:
                if low is not None and not any(w in low for w in words):
                    continue
            elif how is False:
                if not any(w in text for w in words):
                    continue
            elif len(text) < how:
                continue
        out = pattern.sub(repl, text)
        if out is not text:
            text = out
            low = text.lower() if text.isascii() else None
    return text


def redact_secrets(text: str) -> str:
    """Secrets only (no personal data): what topics, tickets and messages get.

    >>> redact_secrets("db postgres://app:pw@10.0.0.5/x key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    'db postgres://<redacted:credentials>@10.0.0.5/x key=<redacted:aws_secret>'
    >>> redact_secrets("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and sha 3f786850e387550fdab836ed7e6dc881de23001b")
    'secret <redacted:aws_secret> and sha 3f786850e387550fdab836ed7e6dc881de23001b'
    """
    return redact(text, personal=False)


def _secret_key(key: str) -> bool:
    norm = key.lower().replace("-", "").replace("_", "").replace(".", "")
    return norm in SECRET_KEY_NAMES or norm.endswith(("password", "secret", "token", "apikey"))


def redact_obj(obj: Any, max_depth: int = 32, personal: bool = True,
               keep: frozenset[str] = frozenset()) -> Any:
    """Redact every string inside JSON-like data; secret-named keys lose their value.

    Returns a new object (the input is not modified). Non-string scalars are
    kept; objects nested deeper than ``max_depth`` are replaced by a marker.
    Top-level keys in ``keep`` are left as they are.
    """
    if max_depth < 0:
        return "<redacted:too_deep>"
    if isinstance(obj, str):
        return redact(obj, personal)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if k in keep:
                out[k] = v
            elif isinstance(k, str) and _secret_key(k) and v not in (None, ""):
                out[k] = _SECRET
            else:
                out[k] = redact_obj(v, max_depth - 1, personal)
        return out
    if isinstance(obj, (list, tuple)):
        items = [redact_obj(v, max_depth - 1, personal) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


#: members of signed decision events left alone: the signature, and the signed
#: events an sre-action carries (they were scrubbed when they were produced)
SIGNED_KEYS = frozenset({"signature", "key_id", "plan", "approvals", "idempotency_key",
                         "event_id"})


def scrub_model(event: M) -> M:
    """``event`` with secrets redacted (the same object when there were none)."""
    data = event.model_dump(mode="json")
    clean = scrub_event(data)
    return event if clean == data else type(event).model_validate(clean)


def scrub_event(data: dict[str, Any]) -> dict[str, Any]:
    """Secrets out of one event's JSON object (before a topic, a ticket, a message).

    >>> scrub_event({"message": "login with password=hunter2", "signature": "c2ln", "n": 1})
    {'message': 'login with password=<redacted:secret>', 'signature': 'c2ln', 'n': 1}
    """
    return redact_obj(data, personal=False, keep=SIGNED_KEYS)  # type: ignore[no-any-return]
