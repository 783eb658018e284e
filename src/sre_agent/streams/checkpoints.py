"""When a stage checkpoints its in-memory state: the broker's pace, not only a clock.

A checkpoint rewrites every leaf holding a changed series (processors/blobs.py): with
10,000 series that is the whole state, 2.7 MB per partition, whatever number of samples
came in between. Faust queues table writes in its producer buffer, the Kafka client
sends one batch per partition per request and one request per broker at a time, so a
checkpoint of 256 KiB leaves leaves the worker at one leaf per round trip. A clock
alone (every ``checkpoint_interval``) queued the next checkpoint behind the previous
one's records; the queue grew, and Faust's conductor stops *every* stream while its
producer buffer holds over 100 records: at half its backlog rate the metrics stage fell
behind by a second every few seconds (p99 39.7 s, docs/benchmarks/cognition.md).

:class:`ChangelogAcks` (a Faust sensor) counts a stage's table writes per partition and
the broker's acknowledgements of them; :class:`CheckpointClock` decides from them:

* a partition's checkpoint is not started while its previous one's records are not all
  acknowledged (at most :data:`HOLD_SECONDS`: a lost acknowledgement never stops
  checkpoints for good);
* a checkpoint that took ``t`` seconds from its start to the broker's acknowledgement of
  its last record makes the next one wait at least ``t / share``: writing state keeps
  the broker (and the producer the stage's events share) busy for at most that share of
  the time, whatever the state's size and the broker's speed;
* never sooner than ``interval`` after the previous one, never later than ``longest``
  (the bound of what a killed worker replays: its input since the last checkpoint).

The exactly-once contract is the stage's, unchanged: events are acknowledged only after
a checkpoint wrote their state, a later checkpoint only acknowledges them later.

Examples
--------
>>> clock = CheckpointClock(interval=5.0, share=0.1, longest=30.0)
>>> acks = ChangelogAcks(["app-baselines-changelog"])
>>> clock.due(0, now=100.0, acks=acks)          # never checkpointed
True
>>> acks.issue(0, 3); clock.started(0, now=100.0, acks=acks)
>>> clock.due(0, now=106.0, acks=acks)          # its 3 records are not acknowledged
False
>>> for _ in range(3):
...     acks.settle(0, now=102.0)               # acknowledged 2 s after the start
>>> clock.due(0, now=106.0, acks=acks), clock.due(0, now=120.0, acks=acks)
(False, True)
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from faust.sensors import Sensor

__all__ = ["HOLD_SECONDS", "ChangelogAcks", "CheckpointClock"]

#: the longest a checkpoint waits for the previous one's acknowledgements (seconds);
#: past it the broker is in trouble anyway, and one more checkpoint costs little
HOLD_SECONDS = 60.0


class ChangelogAcks(Sensor):  # type: ignore[misc]
    """Table writes per partition: issued by the stage, acknowledged by the broker.

    The stage calls :meth:`issue` for each table write (a record Faust will produce to
    the table's changelog, partition = the table partition); Faust calls
    :meth:`on_send_initiated` / :meth:`on_send_completed` / :meth:`on_send_error` as the
    records leave. Add it to ``app.sensors`` before any record is sent.
    """

    def __init__(self, topics: Iterable[str]) -> None:
        super().__init__()
        self.topics = frozenset(topics)
        self.issued: defaultdict[int, int] = defaultdict(int)
        self.done: defaultdict[int, int] = defaultdict(int)
        self.errors = 0
        #: partition -> (records issued up to the mark, when the mark was set)
        self._marks: dict[int, tuple[int, float]] = {}
        #: partition -> seconds from the mark to the acknowledgement of its last record
        self._settled: dict[int, float] = {}

    def issue(self, partition: int, n: int = 1) -> None:
        self.issued[partition] += n

    def pending(self, partition: int) -> int:
        """Records of ``partition`` written and not acknowledged (nor failed) yet."""
        return max(0, self.issued[partition] - self.done[partition])

    def mark(self, partition: int, since: float) -> None:
        """Time the acknowledgement of every record issued so far, from ``since``."""
        self._settled.pop(partition, None)
        if self.pending(partition):
            self._marks[partition] = (self.issued[partition], since)
        else:
            self._marks.pop(partition, None)
            self._settled[partition] = time.monotonic() - since

    def settled(self, partition: int) -> float | None:
        """Seconds from the last mark to its records' acknowledgement (None: not yet)."""
        return self._settled.get(partition)

    def settle(self, partition: int, now: float | None = None) -> None:
        """One record of ``partition`` left the producer (acknowledged or failed)."""
        self.done[partition] += 1
        mark = self._marks.get(partition)
        if mark is not None and self.done[partition] >= mark[0]:
            del self._marks[partition]
            self._settled[partition] = (time.monotonic() if now is None else now) - mark[1]

    # ------------------------------------------------------------ Faust sensor hooks
    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> int | None:
        return message.partition if topic in self.topics else None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        if state is not None:
            self.settle(state)

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        if state is not None:
            self.errors += 1
            self.settle(state)


class CheckpointClock:
    """Per partition: whether a checkpoint is due (see the module's rules).

    Parameters
    ----------
    interval
        The shortest time between two checkpoints of a partition (seconds).
    share
        The largest share of the time a partition's checkpoints may take, from their
        start to the broker's acknowledgement of their last record.
    longest
        The longest wait the share rule may impose (at least ``interval``).
    """

    def __init__(self, interval: float, share: float, longest: float) -> None:
        self.interval = interval
        self.share = share
        self.longest = max(interval, longest)
        #: partition -> (when its last checkpoint started, its CPU seconds)
        self._last: dict[int, tuple[float, float]] = {}
        #: checkpoints put off because the previous one was not acknowledged
        self.held = 0

    def due(self, partition: int, now: float, acks: ChangelogAcks) -> bool:
        last = self._last.get(partition)
        if last is None:
            return True
        start, cpu = last
        elapsed = now - start
        if elapsed < max(self.interval, min(self.longest, cpu / self.share)):
            return False
        if acks.pending(partition) and elapsed < HOLD_SECONDS:
            self.held += 1
            return False
        took = acks.settled(partition)
        return took is None or elapsed >= min(self.longest, took / self.share)

    def started(self, partition: int, now: float, acks: ChangelogAcks,
                cpu: float = 0.0) -> None:
        """A checkpoint of ``partition`` started at ``now`` and wrote its records
        (``acks.issue``d) using ``cpu`` seconds."""
        self._last[partition] = (now, cpu)
        acks.mark(partition, now)

    def forget(self, partition: int) -> None:
        self._last.pop(partition, None)
