"""The Faust app: topics, agents, tables, timers and web views — wiring only.

The names below are imported on first use: a module that needs one piece of the
wiring (``streams.admin`` to create topics, ``streams.collectors`` for the PromQL
query list) must not build every stage's imports (Faust, River, the Kubernetes
and LLM clients: seconds of CPU), which made one-shot CLI commands slow to start
and slow to report an unreachable broker.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import STAGES, create_app
    from .context import Stats, StreamContext

__all__ = ["STAGES", "Stats", "StreamContext", "create_app"]

_WHERE = {"STAGES": "app", "create_app": "app", "Stats": "context", "StreamContext": "context"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
