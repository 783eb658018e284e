"""Issue 15, deliverable 1: keys from secrets, the public key documented for external
``sre-actions`` consumers, and the ACL recipe (``sre-agent security``).

* ``keygen`` prints a private key the agent accepts as ``SRE_AGENT_SECURITY__SIGNING_KEY``;
* ``public-key`` prints the public half of the configured key with its id, and the
  verification snippet of docs/deploy.md ("Trust") accepts an event the agent signed with
  it and refuses a forged one;
* ``acls`` prints ``kafka-acls.sh`` commands equal to :func:`acl_recipe` (what
  ``tests/integration/test_decision_trust.py`` applies to a SASL broker); only the agent
  and the ingest user may write, the ingest user no decision topic.
"""

from __future__ import annotations

import base64
import re
import shlex
import textwrap
from pathlib import Path

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sre_agent.cli import main
from sre_agent.config import load_settings
from sre_agent.processors.signing import Signer
from sre_agent.sinks.kafka import acl_recipe

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def _run(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str]) -> str:
    assert main(argv, env=env) == 0
    return capsys.readouterr().out


def _pems(text: str, kind: str) -> list[str]:
    return re.findall(rf"-----BEGIN {kind}-----\n.*?-----END {kind}-----\n", text, re.S)


def test_keygen_then_public_key_verifies_with_the_documented_recipe(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = _run(capsys, ["security", "keygen"], {})
    private, = _pems(out, "PRIVATE KEY")
    signer = Signer.from_text(private)
    assert f"key id {signer.key_id}" in out
    env = {"SRE_AGENT_SECURITY__SIGNING_KEY": private,
           "SRE_AGENT_WORKER__DATA_DIR": str(tmp_path)}
    out = _run(capsys, ["security", "public-key"], env)
    assert f"# key id {signer.key_id} (signing)" in out
    pem, = _pems(out, "PUBLIC KEY")
    assert not list(tmp_path.iterdir())  # the configured key is used, none generated

    # the docs' snippet, as an external sre-actions consumer runs it
    doc = DOCS.read_text(encoding="utf-8")
    snippet = doc[doc.index("import base64, orjson"):]
    snippet = textwrap.dedent("  " + snippet[:snippet.index("```")])  # a list item's block
    event = signer.sign_bytes({"action_id": "a-1", "plan_id": "p-1", "dry_run": False})

    def verify(value: bytes) -> None:
        exec(snippet, {"record": type("R", (), {"value": value}), "PEM": pem.encode()})  # noqa: S102

    verify(event)
    forged = orjson.loads(event)
    forged["dry_run"] = True
    with pytest.raises(InvalidSignature):
        verify(orjson.dumps(forged))
    key = load_pem_public_key(pem.encode())
    key.verify(base64.b64decode(orjson.loads(event)["signature"]),  # type: ignore[union-attr]
               orjson.dumps({k: v for k, v in orjson.loads(event).items() if k != "signature"},
                            option=orjson.OPT_SORT_KEYS))


def test_acls_prints_the_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SRE_AGENT_KAFKA__TOPIC_PREFIX": "prod.", "SRE_AGENT_WORKER__APP_ID": "sre-agent"}
    out = _run(capsys, ["security", "acls", "--agent-user", "agent", "--ingest-user", "fb",
                        "--reader-user", "exec"], env)
    lines = [shlex.split(line) for line in out.splitlines() if line.startswith("kafka-acls.sh")]
    want = acl_recipe(load_settings(env=env), "agent", "fb", "exec")
    assert len(lines) == len(want) == 3
    for got, argv in zip(lines, want, strict=True):
        assert got[0] == "kafka-acls.sh" and got[-len(argv):] == argv
    # nobody but the agent may write a decision topic
    writers = {a[a.index("--allow-principal") + 1] for a in want
               if any(op in a for op in ("All", "Write"))}
    assert writers == {"User:agent", "User:fb"}
    fb = next(a for a in want if "User:fb" in a)
    assert not {"prod.action-plans", "prod.approvals", "prod.sre-actions",
                "prod.action-results"} & set(fb)
