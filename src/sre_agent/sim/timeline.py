"""The eval's timeline: history to learn from, then scenarios between clean gaps.

Examples
--------
>>> from .scenarios import SCENARIOS
>>> segs = plan([SCENARIOS["crash_loop"]], start=0.0, history=3600.0, gap=600.0)
>>> [(s.kind, s.start, s.end) for s in segs]
[('history', 0.0, 3600.0), ('clean', 3600.0, 4200.0), ('scenario', 4200.0, 8400.0), ('clean', 8400.0, 9000.0)]
>>> clean_intervals(segs, [])
[(3600.0, 4200.0), (8400.0, 9000.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .scenarios import Scenario
from .truth import GroundTruth

__all__ = ["Segment", "clean_intervals", "plan"]


@dataclass(frozen=True)
class Segment:
    kind: str  # history | clean | scenario
    start: float
    end: float
    scenario: Scenario | None = None


def plan(scenarios: Sequence[Scenario], start: float, history: float,
         gap: float) -> list[Segment]:
    """History, then each scenario preceded by a clean gap, then a last clean gap."""
    out = [Segment("history", start, start + history)] if history > 0 else []
    t = start + history
    for sc in scenarios:
        if gap > 0:
            out.append(Segment("clean", t, t + gap))
            t += gap
        out.append(Segment("scenario", t, t + sc.duration, sc))
        t += sc.duration
    if gap > 0:
        out.append(Segment("clean", t, t + gap))
    return out


def clean_intervals(segments: Sequence[Segment],
                    truths: Sequence[GroundTruth]) -> list[tuple[float, float]]:
    """Time with no real fault: clean gaps, lead-ins before onsets, no-fault scenarios."""
    out = [(s.start, s.end) for s in segments if s.kind == "clean"]
    for gt in truths:
        if not gt.fault:
            out.append((gt.window_start, gt.window_end))
        elif gt.start > gt.window_start:
            out.append((gt.window_start, gt.start))
    return sorted(out)
