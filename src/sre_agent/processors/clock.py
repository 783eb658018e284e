"""An event-time clock for stages that reason about windows and timeouts.

Windows, hold-downs and idle resolution must follow the *events'* time, or an
accelerated replay (days of history in minutes) and a backlog after an outage
both look like nothing ever goes idle. But when no events arrive, time must still
pass. :class:`EventClock` is the event-time watermark plus the wall-clock time
elapsed since the watermark last moved; event times further ahead of the wall
clock than ``max_ahead`` are clamped so one far-future timestamp cannot fast-
forward every window.

Pure: the caller passes the wall clock in.

>>> c = EventClock()
>>> c.now(wall=1000.0)                  # no event yet: wall clock
1000.0
>>> c.observe(500.0, wall=1000.0)       # replaying old history
>>> c.now(wall=1000.0), c.now(wall=1010.0)
(500.0, 510.0)
>>> c.observe(400.0, wall=1010.0)       # late event: the watermark never goes back
>>> c.now(wall=1010.0)
510.0
>>> c.observe(9e9, wall=1010.0)         # far-future timestamp: clamped
>>> c.now(wall=1010.0)
1310.0
"""

from __future__ import annotations

__all__ = ["EventClock"]


class EventClock:
    def __init__(self, max_ahead: float = 300.0) -> None:
        self.max_ahead = max_ahead
        self._mark: float | None = None
        self._wall_at_mark = 0.0

    def observe(self, event_time: float, wall: float) -> None:
        """Advance the watermark to ``event_time`` (Unix seconds) if it is newer."""
        t = min(event_time, wall + self.max_ahead)
        if self._mark is None or t > self.now(wall):
            self._mark, self._wall_at_mark = t, wall

    def now(self, wall: float) -> float:
        """Current event time: watermark plus wall time elapsed since it moved."""
        if self._mark is None:
            return wall
        return self._mark + max(0.0, wall - self._wall_at_mark)
