"""``/metrics``: the agent's own Prometheus metrics, built at scrape time.

A custom collector in a registry owned by the app (nothing global at import
time) reads the worker's counters (:class:`~.context.Stats`), Faust's monitor
(lag, messages), a Faust sensor of its own (events per stage, event runtime,
commit and produce latency as histograms), the executor's action counts and
the read model (incidents, plans, LLM use, stage latencies measured from event
times). Counters other stages add to ``Stats`` later are exported too, as
``sre_agent_stats_<field>``.

Prometheus conventions (docs/deploy.md, "Monitoring the agent"): every label
is bounded by code or configuration, never by what an event says (a stage is
an agent name, an action outside the catalogue is ``other``); latencies are
histograms (``_bucket``/``_sum``/``_count``, aggregatable across workers), not
averages; counters end in ``_total``; ``sre_agent_build_info`` carries the
version as labels with the value 1.
"""

from __future__ import annotations

import dataclasses
import platform
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, get_args

import orjson
from faust.sensors import Sensor
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..processors.playbooks import ACTIONS
from ..schemas import ActionResult

from .. import __version__

if TYPE_CHECKING:
    from ..streams.context import StreamContext
    from .http import Api

__all__ = ["AgentCollector", "StageSensor", "render", "stage_sensor"]

P = "sre_agent_"
#: Stats fields exported explicitly below
KNOWN_STATS = {"started", "events_in", "events_out", "dlq", "samples_in", "health"}


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[Any, float]
) -> CounterMetricFamily:
    m = CounterMetricFamily(P + name, doc, labels=labels)
    for k, v in sorted(values.items(), key=lambda kv: str(kv[0])):
        m.add_metric(list(k) if isinstance(k, tuple) else [str(k)], float(v))
    return m


def _gauge(
    name: str,
    doc: str,
    value: float | None = None,
    labels: list[str] | None = None,
    values: Mapping[Any, float] | None = None,
) -> GaugeMetricFamily:
    if labels:
        m = GaugeMetricFamily(P + name, doc, labels=labels)
        for k, v in sorted((values or {}).items(), key=lambda kv: str(kv[0])):
            m.add_metric(list(k) if isinstance(k, tuple) else [str(k)], float(v))
        return m
    return GaugeMetricFamily(P + name, doc, value=float(value or 0.0))


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


#: events in flight the sensor remembers the start time of
MAX_IN_FLIGHT = 65_536

#: ActionResult.status values
OUTCOMES = frozenset(get_args(ActionResult.model_fields["status"].annotation))

#: seconds; a Kafka event handled in well under a millisecond up to a stuck handler
RUNTIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)
#: seconds; broker round trips (commit, produce-to-ack)
BROKER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0, 30.0)


class StageSensor(Sensor):  # type: ignore[misc]
    """Faust sensor: events per stage (agent), and latencies as cumulative histograms.

    Faust's own monitor counts events per asyncio task under the task's repr
    (a new label value for every restarted actor, with source paths in it) and
    keeps only averages of the last 100 latencies; neither follows Prometheus'
    conventions. The stage is the Faust agent's short name, resolved once per
    stream from the app's actors; a stream no actor owns is ``other``.

    It also counts the action results this worker produces (only the executor
    produces to ``action-results``), once the broker acknowledged them, by
    action (``other`` outside the catalogue), dry run and outcome.
    """

    def __init__(self, app: Any, results_topic: str) -> None:
        super().__init__()
        self._app = app
        self._results_topic = results_topic
        self.actions: Counter[tuple[str, str, str]] = Counter()
        self._stage_of: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        #: stream -> monotonic time it last took an event, or first seen waiting
        self._last_in: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self.events: Counter[str] = Counter()
        #: (stream id, tp, offset) -> monotonic time in, for streams that ack by hand
        #: (Faust's Stream.ack passes no sensor state); bounded, oldest dropped
        self._t_in: OrderedDict[tuple[int, Any, int], float] = OrderedDict()
        self.runtime = Histogram(P + "event_runtime_seconds",
                                 "time from a stream taking an event to acking it (Faust)",
                                 registry=None, buckets=RUNTIME_BUCKETS)
        self.commit = Histogram(P + "commit_latency_seconds", "offset commit latency",
                                registry=None, buckets=BROKER_BUCKETS)
        self.send = Histogram(P + "send_latency_seconds",
                              "produce latency, send to broker acknowledgement",
                              registry=None, buckets=BROKER_BUCKETS)

    def _stage(self, stream: Any) -> str:
        try:
            return self._stage_of[stream]
        except (KeyError, TypeError):
            pass
        name = "other"
        owner = getattr(stream, "task_owner", None)
        for stage, actor in self._actors():
            if getattr(actor, "stream", None) is stream or (
                    owner is not None and getattr(actor, "actor_task", None) is owner):
                name = stage
                break
        try:
            self._stage_of[stream] = name
        except TypeError:  # pragma: no cover - not weak-referenceable
            pass
        return name

    def _actors(self) -> Iterator[tuple[str, Any]]:
        for agent in list(getattr(self._app, "agents", {}).values()):
            for actor in list(getattr(agent, "_actors", ()) or ()):
                yield str(agent.name).rsplit(".", 1)[-1], actor

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[str, Any]:
        now = time.monotonic()
        self.events[self._stage(stream)] += 1
        try:
            self._last_in[stream] = now
        except TypeError:  # pragma: no cover - not weak-referenceable
            pass
        self._t_in[(id(stream), tp, offset)] = now
        if len(self._t_in) > MAX_IN_FLIGHT:
            self._t_in.popitem(last=False)
        return {"t": now}

    def stalled(self, now: float, after: float) -> dict[str, dict[str, Any]]:
        """Stages whose input buffer holds events but that took none for ``after`` s.

        A stage blocked in its handler (or on a dependency it waits for) stops
        taking events while the consumer keeps filling its buffer; an idle stage
        has an empty buffer and is never stalled.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, actor in self._actors():
            stream = getattr(actor, "stream", None)
            queue = getattr(getattr(stream, "channel", None), "queue", None)
            try:
                waiting = int(queue.qsize()) if queue is not None else 0
            except Exception:  # noqa: BLE001 - a channel without a queue: nothing to judge
                waiting = 0
            if stream is None or waiting <= 0:
                continue
            try:
                last = self._last_in.setdefault(stream, now)
            except TypeError:  # pragma: no cover
                continue
            idle = now - last
            if idle >= after:
                prev = out.get(name)
                if prev is None or idle > prev["idle_seconds"]:
                    out[name] = {"waiting": waiting, "idle_seconds": round(idle, 1)}
        return out

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: dict[str, Any] | None = None) -> None:
        t = self._t_in.pop((id(stream), tp, offset), None)
        if t is None and state:
            t = state.get("t")
        if t is not None:
            self.runtime.observe(time.monotonic() - t)

    def on_commit_initiated(self, consumer: Any) -> float:
        return time.monotonic()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        if isinstance(state, float):
            self.commit.observe(time.monotonic() - state)

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> tuple[float, tuple[str, str, str] | None]:
        labels = None
        if topic == self._results_topic:
            labels = self._action_labels(getattr(message, "value", None))
        return time.monotonic(), labels

    @staticmethod
    def _action_labels(value: Any) -> tuple[str, str, str] | None:
        try:
            doc = orjson.loads(value) if isinstance(value, bytes | str) else None
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        action, status = doc.get("action"), doc.get("status")
        return (action if isinstance(action, str) and action in ACTIONS else "other",
                "true" if doc.get("dry_run") is True else "false",
                status if isinstance(status, str) and status in OUTCOMES else "other")

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        if isinstance(state, tuple):
            t, labels = state
            self.send.observe(time.monotonic() - t)
            if labels is not None:
                self.actions[labels] += 1

    def metrics(self) -> Iterator[Metric]:
        yield _counter("stream_events", "events processed per stage (Faust agent)", ["stage"],
                       self.events)
        yield _counter(
            "actions",
            "action results this worker's executor produced, by action, dry run and outcome",
            ["action", "dry_run", "outcome"],
            self.actions,
        )
        for h in (self.runtime, self.commit, self.send):
            yield from h.collect()


def stage_sensor(ctx: StreamContext) -> StageSensor:
    """The app's one :class:`StageSensor` (made and added on first use).

    Call it while the app is declared, before any stream, commit or send runs:
    Faust hands each sensor the state its ``*_initiated`` hook returned.
    """
    sensor = ctx.stages.stage_sensor
    if sensor is None:
        sensor = StageSensor(ctx.app, ctx.settings.topic("action-results"))
        sensors = getattr(ctx.app, "sensors", None)
        if sensors is not None:
            sensors.add(sensor)
        ctx.stages.stage_sensor = sensor
    return sensor


class AgentCollector(Collector):
    def __init__(self, api: Api) -> None:
        self.api = api
        self.sensor = stage_sensor(api.ctx)
        self.build = {"version": __version__, "python": platform.python_version(),
                      "faust": _version("faust-streaming"), "aiokafka": _version("aiokafka")}

    def collect(self) -> Iterator[Metric]:
        ctx, rm = self.api.ctx, self.api.model
        st = ctx.stats
        info = GaugeMetricFamily(P + "build_info", "version of the agent and its stream stack",
                                 labels=list(self.build))
        info.add_metric(list(self.build.values()), 1.0)
        yield info
        yield _gauge("uptime_seconds", "seconds since the worker started", time.time() - st.started)
        yield _counter("events_in", "events decoded per topic", ["topic"], st.events_in)
        yield _counter("events_out", "events produced per topic", ["topic"], st.events_out)
        yield _counter(
            "dlq", "events sent to a dead-letter topic, per source topic", ["topic"], st.dlq
        )
        yield _counter("samples_in", "metric samples received", [], {(): st.samples_in})
        yield _gauge(
            "health_ok",
            "1 when a collector/sink reports healthy",
            labels=["component"],
            values={k: 1.0 if h.get("ok", True) else 0.0 for k, h in st.health.items()},
        )
        yield _gauge(
            "circuit_breaker_open",
            "1 while the circuit breaker of an outbound dependency is open",
            labels=["dependency"],
            values={k: 1.0 if h.get("circuit") == "open" else 0.0
                    for k, h in st.health.items() if "circuit" in h},
        )
        from .probes import readiness  # probes imports this module

        ready = readiness(ctx)
        yield _gauge("ready", "1 while /readyz answers 200 (not recovering, broker connected, "
                     "no stalled stage)", int(ready["ready"]))
        stalled = {name: 0.0 for name, _ in self.sensor._actors()}
        stalled.update({name: 1.0 for name in ready["stalled"]})
        yield _gauge("stage_stalled", "1 while a stage has events waiting but took none for "
                     "worker.stall_seconds", labels=["stage"], values=stalled)
        audit = st.health.get("audit") or {}
        yield _gauge("audit_pending", "audit records waiting for PostgreSQL (held, retrying)",
                     float(audit.get("pending") or 0))
        yield _counter("audit_written", "audit rows written to PostgreSQL", [],
                       {(): float(audit.get("written") or 0)})
        yield from self._faust(ctx.app)
        yield from self.sensor.metrics()
        yield from self._extra_stats(st)
        # read model
        s = rm.summary()
        yield _gauge("incidents_open", "open incidents", s["incidents_open"])  # type: ignore[arg-type]
        yield _gauge("anomalies_open", "open anomalies", s["anomalies_open"])  # type: ignore[arg-type]
        yield _gauge("plans_pending", "action plans awaiting approval", s["plans_pending"])  # type: ignore[arg-type]
        yield _gauge("predictions", "series with an early warning", s["predictions"])  # type: ignore[arg-type]
        yield _gauge(
            "readmodel_action_results",
            "action results in the read model (the whole group's, over its lookback), by outcome",
            labels=["outcome"],
            values=rm.actions_by_outcome,
        )
        yield _counter("llm_calls", "RCA runs that used the LLM", [], {(): rm.llm_calls})
        yield _counter("llm_tokens", "LLM tokens used by RCA", [], {(): rm.llm_tokens})
        h = HistogramMetricFamily(
            P + "stage_latency_seconds",
            "event-time latency of each hop: correlate (signal->incident), "
            "rca (incident->rca), plan (rca->plan), execute (plan->result)",
            labels=["stage"],
        )
        for stage in rm.latency.stages():
            buckets, total = rm.latency.get(stage)
            h.add_metric(
                [stage],
                [(str(le) if le != float("inf") else "+Inf", c) for le, c in buckets],
                total,
            )
        yield h
        pj = self.api.projection.health()
        yield _counter(
            "readmodel_events", "events folded into the API read model", ["topic"], rm.events
        )
        yield _counter(
            "readmodel_rejected", "invalid events skipped by the read model", ["topic"], rm.rejected
        )
        yield _gauge("readmodel_lag", "messages the read model is behind", pj["lag"])
        yield _gauge(
            "readmodel_caught_up",
            "1 once the read model replayed its lookback",
            int(pj["caught_up"]),
        )
        yield _counter(
            "api_requests",
            "API requests by endpoint and status class",
            ["endpoint", "code"],
            self.api.requests,
        )
        yield _counter(
            "chatops_commands", "Slack /sre commands by command", ["command"], self.api.commands
        )

    def _faust(self, app: Any) -> Iterator[Metric]:
        mon = getattr(app, "monitor", None)
        if mon is None:
            return
        lag: dict[tuple[str, str], float] = {}
        for tp, end in (getattr(mon, "tp_end_offsets", None) or {}).items():
            read = mon.tp_read_offsets.get(tp, -1)
            lag[(tp.topic, str(tp.partition))] = max(0, end - read - 1)
        yield _gauge(
            "consumer_lag",
            "messages behind the end of each assigned partition",
            labels=["topic", "partition"],
            values=lag,
        )
        yield _gauge("consumer_lag_total", "sum of consumer lag", sum(lag.values()))
        yield _counter(
            "messages_received", "messages received", [], {(): mon.messages_received_total}
        )
        yield _counter("messages_sent", "messages produced", [], {(): mon.messages_sent})

    def _extra_stats(self, st: Any) -> Iterator[Metric]:
        for f in dataclasses.fields(st):
            if f.name in KNOWN_STATS:
                continue
            val = getattr(st, f.name)
            name = "stats_" + "".join(c if c.isalnum() else "_" for c in f.name)
            if isinstance(val, bool):
                yield _gauge(name, f"Stats.{f.name}", int(val))
            elif isinstance(val, int | float):
                yield _gauge(name, f"Stats.{f.name}", val)
            elif isinstance(val, Mapping) and all(isinstance(x, int | float) for x in val.values()):
                yield _gauge(
                    name,
                    f"Stats.{f.name}",
                    labels=["key"],
                    values={str(k): v for k, v in val.items()},
                )


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
