"""Stage wiring: ingest (placeholder until its issue lands)."""

from __future__ import annotations

from .context import StreamContext

__all__ = ["register"]


def register(ctx: StreamContext) -> None:
    """Declare this stage's agents, tables, timers and views on ctx.app."""
