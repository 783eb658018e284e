"""The stream RCA's refinement timer and the rca agent share the pending refinements.

In the closed loop (``sre-agent eval``, node_pressure) the timer awaited one refinement
while the rca agent dropped another pending incident (it had resolved); the timer then
looked the dropped one up, raised KeyError, and the worker crashed (the eval hung)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import UTC, datetime

from sre_agent.schemas import Incident
from sre_agent.streams.rca_agent import PENDING_WALL, due_refinements


def inc(iid: str) -> Incident:
    return Incident(incident_id=iid, title=iid, fingerprint=iid,
                    opened_at=datetime(2025, 11, 3, tzinfo=UTC))


def test_entries_dropped_while_refining_do_not_crash_the_timer() -> None:
    pending = OrderedDict((k, (inc(k), 0.0, None, 0.0)) for k in ("a", "b", "c"))
    refined: list[str] = []

    async def refine(i: Incident) -> None:
        await asyncio.sleep(0)
        refined.append(i.incident_id)

    async def timer() -> None:
        for i, _ in due_refinements(pending, clock=400.0, after=300.0, stalled=False, now=1.0):
            await refine(i)

    async def agent() -> None:  # the incident "b" resolved meanwhile
        await asyncio.sleep(0)
        pending.pop("b", None)

    async def main() -> None:
        await asyncio.gather(timer(), agent())

    asyncio.run(main())
    assert refined == ["a", "b", "c"] and not pending


def test_not_yet_due_entries_stay_and_stale_ones_go() -> None:
    pending = OrderedDict(early=(inc("early"), 0.0, None, 0.0),
                          later=(inc("later"), 1000.0, None, 0.0),
                          stale=(inc("stale"), 1000.0, None, -PENDING_WALL - 1))
    due = due_refinements(pending, clock=400.0, after=300.0, stalled=False, now=0.0)
    assert [i.incident_id for i, _ in due] == ["early"] and list(pending) == ["later"]
    assert [i.incident_id for i, _ in
            due_refinements(pending, clock=400.0, after=300.0, stalled=True, now=0.0)] == ["later"]
