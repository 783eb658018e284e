"""The Faust app: topics, agents, tables, timers and web views — wiring only."""

from __future__ import annotations

from .app import STAGES, create_app
from .context import Stats, StreamContext

__all__ = ["STAGES", "Stats", "StreamContext", "create_app"]
