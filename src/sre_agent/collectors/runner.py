"""Scheduling of collector jobs: own interval, exponential backoff, health.

A *job* is one unit of polling (one PromQL query, one LogQL query, one
CloudWatch read). It collects without side effects and returns a
:class:`Collected` holding the events and the cursor to commit once they are
safely produced, so a failed produce never skips data. A
:class:`CollectorRunner` owns the jobs of one collector (``prometheus``,
``loki``, ``cloudwatch``); the wiring calls :meth:`CollectorRunner.tick` from a
leader-only Faust timer and reads :meth:`CollectorRunner.health` into
``/status``. Time is passed in: nothing here reads a clock.

Examples
--------
>>> import asyncio
>>> class Flaky:
...     name, interval, calls = "q", 10.0, 0
...     async def collect(self, now):
...         self.calls += 1
...         if self.calls == 2:
...             raise RuntimeError("boom")
...         return Collected(events=["e"], cursor=now)
...     def commit(self, cursor):
...         self.cursor = cursor
>>> sent = []
>>> async def emit(c):
...     sent.extend(c.events)
>>> r = CollectorRunner("demo", [Flaky()], emit, Backoff(factor=2, max_delay=60))
>>> async def run_ticks():
...     return [await r.tick(float(t)) for t in (0, 10, 20, 30, 40)]
>>> asyncio.run(run_ticks())  # jobs run per tick: the failure at 10 backs off to 30
[1, 1, 0, 1, 1]
>>> h = r.health()
>>> h["ok"], h["jobs"]["q"]["failures"], h["last_error"], len(sent)
(True, 0, 'q: RuntimeError: boom', 3)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .normalize import Rejected

__all__ = ["Backoff", "Collected", "CollectorRunner", "Job", "JobState"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Collected:
    """What one poll produced: events, series refused by the schema, the new cursor."""

    events: list[Any] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    cursor: Any = None


class Job(Protocol):
    name: str
    interval: float

    async def collect(self, now: float) -> Collected: ...

    def commit(self, cursor: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the next try: ``interval * factor**failures``, capped at ``max_delay``.

    >>> b = Backoff(factor=2.0, max_delay=100.0)
    >>> [b.delay(10.0, n) for n in range(5)]
    [10.0, 20.0, 40.0, 80.0, 100.0]
    """

    factor: float = 2.0
    max_delay: float = 600.0

    def delay(self, interval: float, failures: int) -> float:
        if failures <= 0:
            return interval
        return min(max(self.max_delay, interval), interval * self.factor ** min(failures, 60))


@dataclass(slots=True)
class JobState:
    next_due: float = 0.0
    failures: int = 0
    runs: int = 0
    events: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_duration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.failures == 0, "failures": self.failures, "runs": self.runs,
                "events": self.events, "last_success": self.last_success,
                "last_error": self.last_error, "last_error_at": self.last_error_at,
                "next_due": self.next_due, "last_duration": self.last_duration}


class CollectorRunner:
    """Run due jobs of one collector; keep per-job backoff and health.

    Parameters
    ----------
    name
        Collector name (``prometheus``...), shown in ``/status``.
    jobs
        The jobs; each has its own ``interval``.
    emit
        Coroutine producing a :class:`Collected` (events to Kafka, rejects to
        the DLQ). The job's cursor is committed only after it returns.
    backoff
        Delay policy after consecutive failures.
    concurrency
        Jobs run at once within one tick.
    """

    def __init__(self, name: str, jobs: Sequence[Job],
                 emit: Callable[[Collected], Awaitable[None]],
                 backoff: Backoff = Backoff(), concurrency: int = 4) -> None:
        self.name = name
        self.jobs = list(jobs)
        self.emit = emit
        self.backoff = backoff
        self.state = {job.name: JobState() for job in self.jobs}
        self._sem = asyncio.Semaphore(concurrency)
        self.ticks = 0

    @property
    def tick_interval(self) -> float:
        """How often the timer should tick: the shortest job interval."""
        return min((j.interval for j in self.jobs), default=60.0)

    async def _run(self, job: Job, now: float, clock: Callable[[], float]) -> None:
        st = self.state[job.name]
        async with self._sem:
            started = clock()
            try:
                got = await job.collect(now)
                await self.emit(got)
                job.commit(got.cursor)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                st.failures += 1
                st.last_error = f"{job.name}: {type(exc).__name__}: {exc}"[:500]
                st.last_error_at = now
                st.next_due = now + self.backoff.delay(job.interval, st.failures)
                log.warning("collector %s job %s failed (%d in a row, next try in %.0fs): %s",
                            self.name, job.name, st.failures, st.next_due - now, exc)
                return
            finally:
                st.runs += 1
                st.last_duration = round(clock() - started, 4)
        st.failures = 0
        st.events += len(got.events)
        st.last_success = now
        st.next_due = now + job.interval

    async def tick(self, now: float, clock: Callable[[], float] | None = None) -> int:
        """Run every job due at ``now``; return how many ran."""
        self.ticks += 1
        due = [j for j in self.jobs if self.state[j.name].next_due <= now]
        if due:
            await asyncio.gather(*(self._run(j, now, clock or (lambda: now)) for j in due))
        return len(due)

    def health(self) -> dict[str, Any]:
        """``{"ok", "last_success", "last_error", ..., "jobs": {...}}`` for ``/status``."""
        states = list(self.state.values())
        successes = [s.last_success for s in states if s.last_success is not None]
        errors = [(s.last_error_at, s.last_error) for s in states if s.last_error_at is not None]
        last_err = max(errors, key=lambda e: e[0]) if errors else (None, None)
        return {
            "ok": all(s.failures == 0 for s in states),
            "last_success": max(successes) if successes else None,
            "last_error": last_err[1],
            "last_error_at": last_err[0],
            "failing_jobs": sorted(n for n, s in self.state.items() if s.failures),
            "events": sum(s.events for s in states),
            "ticks": self.ticks,
            "jobs": {n: s.as_dict() for n, s in self.state.items()},
        }
