"""Probe verdicts and the metrics sensor, on stand-in app objects (no broker).

The same logic runs against a real worker and broker in
``tests/integration/test_ops_probes_metrics.py`` and ``tests/chaos/test_probes.py``;
here each condition is set one at a time, including those a real worker only
passes through briefly (rebalancing, a crashed consumer thread).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from sre_agent.config import Settings
from sre_agent.streams.context import Stages
from sre_agent.web.metrics import StageSensor
from sre_agent.web.probes import liveness, readiness


class Event:
    def __init__(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass
class Recovery:
    in_recovery: bool = False
    completed: Event = field(default_factory=Event)

    def active_remaining_total(self) -> int:
        return 7 if self.in_recovery else 0

    def standby_remaining_total(self) -> int:
        return 0


@dataclass
class Tables:
    recovery: Recovery = field(default_factory=Recovery)


@dataclass
class Coordinator:
    coordinator_id: int | None = 1


@dataclass
class KafkaConsumer:
    _coordinator: Coordinator = field(default_factory=Coordinator)


@dataclass
class Thread:
    _consumer: KafkaConsumer = field(default_factory=KafkaConsumer)
    crashed: bool = False
    crash_reason: Any = None


@dataclass
class Consumer:
    _thread: Thread = field(default_factory=Thread)
    crashed: bool = False


@dataclass
class Channel:
    queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class Stream:
    channel: Channel = field(default_factory=Channel)
    task_owner: Any = None


@dataclass(eq=False)
class Actor:
    stream: Stream = field(default_factory=Stream)
    actor_task: Any = None


@dataclass
class Agent:
    name: str
    _actors: list[Actor] = field(default_factory=list)


@dataclass
class App:
    tables: Tables = field(default_factory=Tables)
    _consumer: Consumer = field(default_factory=Consumer)
    rebalancing: bool = False
    crashed: bool = False
    crash_reason: Any = None
    agents: dict[str, Agent] = field(default_factory=dict)


@dataclass
class Ctx:
    app: App
    settings: Settings = field(default_factory=Settings)
    stages: Stages = field(default_factory=Stages)


def ctx_with(**kw: Any) -> Ctx:
    return Ctx(App(**kw))


def test_a_healthy_worker_is_live_and_ready() -> None:
    ctx = ctx_with()
    assert liveness(ctx) == {"live": True, "reasons": []}  # type: ignore[arg-type]
    r = readiness(ctx)  # type: ignore[arg-type]
    assert r["ready"] is True and r["reasons"] == [] and r["broker"]["connected"] is True


def test_recovering_is_not_ready_but_live() -> None:
    for app_kw, word in (({"rebalancing": True}, "rebalancing"),
                         ({"tables": Tables(Recovery(in_recovery=True))}, "restoring tables (7")):
        ctx = ctx_with(**app_kw)
        r = readiness(ctx)  # type: ignore[arg-type]
        assert r["ready"] is False and any(word in x for x in r["reasons"]), r
        assert liveness(ctx)["live"] is True  # type: ignore[arg-type]
    ctx = ctx_with()
    ctx.app.tables.recovery.completed._set = False
    assert "recovering: first recovery not complete" in readiness(ctx)["reasons"]  # type: ignore[arg-type]


def test_no_group_coordinator_is_not_ready_but_live() -> None:
    ctx = ctx_with()
    ctx.app._consumer._thread._consumer._coordinator.coordinator_id = None
    r = readiness(ctx)  # type: ignore[arg-type]
    assert r["ready"] is False and r["broker"]["connected"] is False
    assert any(x.startswith("broker: no group coordinator") for x in r["reasons"])
    assert liveness(ctx)["live"] is True  # type: ignore[arg-type]


def test_only_a_crashed_app_or_consumer_fails_liveness() -> None:
    ctx = ctx_with()
    ctx.app._consumer._thread.crashed = True
    ctx.app._consumer._thread.crash_reason = RuntimeError("fetcher died")
    live = liveness(ctx)  # type: ignore[arg-type]
    assert live == {"live": False, "reasons": ["consumer crashed: fetcher died"]}
    assert readiness(ctx)["ready"] is False  # type: ignore[arg-type]
    ctx = ctx_with(crashed=True, crash_reason="boom")
    assert liveness(ctx)["reasons"] == ["app crashed: boom"]  # type: ignore[arg-type]


def test_a_stage_with_waiting_events_and_no_progress_is_stalled() -> None:
    busy, idle = Actor(), Actor()
    ctx = ctx_with(agents={"a": Agent("audit-sink", [busy]), "b": Agent("rca", [idle])})
    sensor = StageSensor(ctx.app, "action-results")
    ctx.stages.stage_sensor = sensor
    sensor.on_stream_event_in(None, 0, busy.stream, None)  # took one event, then blocks
    t0 = sensor._last_in[busy.stream]
    for i in range(3):
        busy.stream.channel.queue.put_nowait(i)
    stall = ctx.settings.worker.stall_seconds
    assert readiness(ctx, now=t0 + stall - 1)["ready"] is True  # type: ignore[arg-type]
    r = readiness(ctx, now=t0 + stall + 1)  # type: ignore[arg-type]
    assert r["ready"] is False and set(r["stalled"]) == {"audit-sink"}, r
    assert r["stalled"]["audit-sink"]["waiting"] == 3
    assert any(x.startswith("stage audit-sink stalled: 3 events waiting") for x in r["reasons"])
    # an idle stage (empty buffer) is never stalled, however long it waits
    assert "rca" not in readiness(ctx, now=t0 + 10 * stall)["stalled"]  # type: ignore[arg-type]
    # taking an event again clears it
    sensor._last_in[busy.stream] = t0 + stall + 1
    assert readiness(ctx, now=t0 + stall + 2)["ready"] is True  # type: ignore[arg-type]
    # stall_seconds = 0 turns the check off
    ctx.settings = Settings(worker={"stall_seconds": 0})
    assert readiness(ctx, now=t0 + 100 * stall)["ready"] is True  # type: ignore[arg-type]


def test_sensor_labels_are_bounded() -> None:
    """Stages are agent names (never a task repr); actions outside the catalogue and
    unknown outcomes are ``other``; only acknowledged sends count."""
    actor = Actor()
    app = App(agents={"x": Agent("sre_agent.streams.rca_agent.rca", [actor])})
    sensor = StageSensor(app, "p.action-results")
    for _ in range(3):
        sensor.on_stream_event_out(None, 0, actor.stream, None,
                                   sensor.on_stream_event_in(None, 0, actor.stream, None))
    sensor.on_stream_event_in(None, 0, Stream(), None)  # a stream no actor owns
    assert dict(sensor.events) == {"rca": 3, "other": 1}

    class Msg:
        def __init__(self, doc: Any) -> None:
            self.value = orjson.dumps(doc)

    sent = [{"action": "scale", "dry_run": True, "status": "dry_run"},
            {"action": "scale", "dry_run": False, "status": "succeeded"},
            {"action": "/etc/passwd <Task pending>", "dry_run": False, "status": "whatever"}]
    for doc in sent:
        sensor.on_send_completed(None, sensor.on_send_initiated(None, "p.action-results",
                                                                Msg(doc), 0, 0), None)
    failed = sensor.on_send_initiated(None, "p.action-results", Msg(sent[0]), 0, 0)
    sensor.on_send_error(None, RuntimeError("x"), failed)  # never acknowledged: not counted
    sensor.on_send_completed(None, sensor.on_send_initiated(None, "p.metrics", Msg(sent[0]), 0, 0),
                             None)
    assert dict(sensor.actions) == {("scale", "true", "dry_run"): 1,
                                    ("scale", "false", "succeeded"): 1,
                                    ("other", "false", "other"): 1}
    assert sensor.send._sum.get() >= 0 and sensor.commit is not None
