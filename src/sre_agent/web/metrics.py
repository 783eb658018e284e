"""``/metrics``: the agent's own Prometheus metrics, built at scrape time.

A custom collector in a registry owned by the app (nothing global at import
time) reads the worker's counters (:class:`~.context.Stats`), Faust's monitor
(lag, per-agent events, runtimes, commit/send latency) and the read model
(incidents, plans, actions by outcome, LLM use, stage latencies measured
from event times). Counters other stages add to ``Stats`` later are exported
too, as ``sre_agent_stats_<field>``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from statistics import fmean
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .http import Api

__all__ = ["AgentCollector", "render"]

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


def _avg(values: Any) -> float:
    vals = list(values or ())
    return fmean(vals) if vals else 0.0


class AgentCollector(Collector):
    def __init__(self, api: Api) -> None:
        self.api = api

    def collect(self) -> Iterator[Metric]:
        ctx, rm = self.api.ctx, self.api.model
        st = ctx.stats
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
        yield from self._faust(ctx.app)
        yield from self._extra_stats(st)
        # read model
        s = rm.summary()
        yield _gauge("incidents_open", "open incidents", s["incidents_open"])  # type: ignore[arg-type]
        yield _gauge("anomalies_open", "open anomalies", s["anomalies_open"])  # type: ignore[arg-type]
        yield _gauge("plans_pending", "action plans awaiting approval", s["plans_pending"])  # type: ignore[arg-type]
        yield _gauge("predictions", "series with an early warning", s["predictions"])  # type: ignore[arg-type]
        yield _counter("actions", "action results by outcome", ["outcome"], rm.actions_by_outcome)
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
            "stream_events",
            "events processed per agent task",
            ["task"],
            dict(mon.events_by_task or {}),
        )
        yield _gauge(
            "event_runtime_seconds_avg",
            "average processing time of an event",
            mon.events_runtime_avg,
        )
        yield _gauge(
            "commit_latency_seconds_avg", "average offset commit latency", _avg(mon.commit_latency)
        )
        yield _gauge("send_latency_seconds_avg", "average produce latency", _avg(mon.send_latency))
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
