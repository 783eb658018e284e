"""A worker starts without importing what it may never use.

Every worker start imports the stages' wiring (``sre_agent.streams.app``); the Anthropic
SDK alone took ~1.7 s of CPU of ~6 s there, at every start (the test suite starts ~100
workers), though it is used only when an API key is set: the LLM analyst now imports it
when it builds its client.
"""

from __future__ import annotations

import subprocess
import sys


def test_the_worker_wiring_does_not_import_the_anthropic_sdk() -> None:
    code = ("import sys, sre_agent.streams.app\n"
            "print(sorted(m for m in ('anthropic',) if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_analyst_builds_its_client_on_first_use() -> None:
    from pydantic import SecretStr

    from sre_agent.config import AnthropicSettings
    from sre_agent.sinks.llm import LlmAnalyst

    analyst = LlmAnalyst(AnthropicSettings(api_key=SecretStr("k"), base_url="http://127.0.0.1:9"))
    assert analyst.enabled
    assert type(analyst.client()).__name__ == "AsyncAnthropic"
