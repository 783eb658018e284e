"""The metrics stage's checkpoint pace (streams/checkpoints.py), without Kafka."""

from __future__ import annotations

from types import SimpleNamespace

from sre_agent.streams.checkpoints import HOLD_SECONDS, ChangelogAcks, CheckpointClock

TOPIC = "app-baselines-changelog"


def _send(acks: ChangelogAcks, partition: int, topic: str = TOPIC) -> object:
    return acks.on_send_initiated(None, topic, SimpleNamespace(partition=partition), 1, 1)


def test_only_the_stage_tables_records_count_and_errors_settle_too() -> None:
    acks = ChangelogAcks([TOPIC])
    acks.issue(1, 2)
    assert acks.pending(1) == 2 and acks.pending(0) == 0
    other = _send(acks, 1, topic="app-other-changelog")
    acks.on_send_completed(None, other, None)  # another table's record: not ours
    assert acks.pending(1) == 2
    acks.on_send_completed(None, _send(acks, 1), None)
    acks.on_send_error(None, RuntimeError("broker away"), _send(acks, 1))
    assert acks.pending(1) == 0 and acks.errors == 1


def test_a_checkpoint_is_not_queued_behind_an_unacknowledged_one() -> None:
    clock, acks = CheckpointClock(interval=0.5, share=0.1, longest=30.0), ChangelogAcks([TOPIC])
    assert clock.due(0, 10.0, acks)
    acks.issue(0, 40)
    clock.started(0, 10.0, acks)
    assert not clock.due(0, 11.0, acks)  # past the interval, its records on their way
    assert clock.held == 1
    assert clock.due(0, 10.0 + HOLD_SECONDS, acks)  # a lost acknowledgement never stops it


def test_the_wait_follows_the_broker_time_within_the_bounds() -> None:
    clock, acks = CheckpointClock(interval=0.5, share=0.1, longest=30.0), ChangelogAcks([TOPIC])
    acks.issue(0, 2)
    clock.started(0, 100.0, acks)
    acks.settle(0, now=100.2)
    acks.settle(0, now=100.4)  # the last record acknowledged 0.4 s after the start
    assert abs(acks.settled(0) - 0.4) < 1e-9
    assert not clock.due(0, 103.9, acks) and clock.due(0, 104.01, acks)  # 0.4 / 0.1
    acks.issue(0)
    clock.started(0, 200.0, acks)
    acks.settle(0, now=209.0)  # 9 s: 90 s by the share, 30 s at most
    assert not clock.due(0, 229.9, acks) and clock.due(0, 230.0, acks)
    clock.forget(0)  # revoked: due at once when it comes back
    assert clock.due(0, 200.1, acks)


def test_records_issued_after_the_start_do_not_stretch_its_time() -> None:
    clock, acks = CheckpointClock(interval=0.5, share=0.1, longest=30.0), ChangelogAcks([TOPIC])
    acks.issue(0, 1)
    clock.started(0, 0.0, acks)
    acks.issue(0, 1)  # an anomaly's transition written at once, later
    acks.settle(0, now=0.1)
    assert abs(acks.settled(0) - 0.1) < 1e-9
    acks.settle(0, now=5.0)
    assert abs(acks.settled(0) - 0.1) < 1e-9
    assert clock.due(0, 1.0, acks)
