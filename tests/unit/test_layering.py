"""Issue 15, item 7: the structure that makes the decision core checkable.

* the import loop ``streams/metrics_agent -> commands/baseline -> cli -> streams`` is
  gone: the stages import neither the CLI nor its commands, and the pure core
  (``processors``, ``models``) imports no wiring, sink or web module;
* clients are built once by one typed owner (:class:`Services`), what stages share is
  typed (:class:`Stages`): no string-keyed ``ctx.state`` is left.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from sre_agent.config import load_settings
from sre_agent.sinks.knowledge import KnowledgeBase
from sre_agent.sinks.llm import LlmAnalyst
from sre_agent.streams.context import Stages, StreamContext
from sre_agent.streams.services import Services

SRC = Path(__file__).resolve().parents[2] / "src" / "sre_agent"


def _loaded_after(imports: str, prefixes: tuple[str, ...]) -> list[str]:
    """Modules under ``prefixes`` a fresh interpreter holds after ``imports``."""
    code = (f"import sys\n{imports}\n"
            f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return proc.stdout.split()


def test_stages_and_web_do_not_import_the_cli() -> None:
    loaded = _loaded_after("import sre_agent.streams.metrics_agent, sre_agent.streams, "
                           "sre_agent.web, sre_agent.streams.app",
                           ("sre_agent.cli", "sre_agent.commands"))
    assert loaded == []


def test_the_pure_core_imports_no_wiring() -> None:
    loaded = _loaded_after("import sre_agent.processors, sre_agent.models",
                           ("sre_agent.streams", "sre_agent.sinks", "sre_agent.web",
                            "sre_agent.cli", "sre_agent.commands"))
    assert loaded == []


def test_no_string_keyed_state_on_the_context() -> None:
    assert "state" not in {f.name for f in dataclasses.fields(StreamContext)}
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # ctx.state / api.ctx.state / self.ctx.state
            if (isinstance(node, ast.Attribute) and node.attr == "state"
                    and isinstance(node.value, ast.Name | ast.Attribute)
                    and (getattr(node.value, "id", None) == "ctx"
                         or getattr(node.value, "attr", None) == "ctx")):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []
    assert all(f.default is None or f.name == "ticket_status"
               for f in dataclasses.fields(Stages))


@pytest.mark.parametrize("enabled", [True, False])
async def test_services_own_the_knowledge_base_and_the_llm(enabled: bool, tmp_path: Path) -> None:
    s = load_settings(env={"SRE_AGENT_KNOWLEDGE__ENABLED": str(enabled).lower(),
                           "SRE_AGENT_WORKER__DATA_DIR": str(tmp_path)})
    services = Services(s)
    assert isinstance(services.llm, LlmAnalyst)
    if enabled:
        assert isinstance(services.knowledge, KnowledgeBase)
    else:
        assert services.knowledge is None
    closed: list[str] = []

    async def close_kb() -> None:
        closed.append("knowledge")

    async def close_llm() -> None:
        closed.append("llm")

    if services.knowledge is not None:
        services.knowledge.close = close_kb  # type: ignore[method-assign]
    services.llm.close = close_llm  # type: ignore[method-assign]
    await services.on_stop()
    assert closed == (["knowledge", "llm"] if enabled else ["llm"])
