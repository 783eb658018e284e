"""What every stage's wiring gets: settings, app, topics, tables, counters.

Helpers here are the only place the codec meets Kafka: :meth:`decode` turns a
raw event into a typed model or routes it to the topic's DLQ; :meth:`send`
encodes a model and produces it with its key. Events of the decision topics
are signed on the way out (:meth:`send`) and their signature checked on the
way in (:meth:`decode_signed`); :meth:`send_acked` returns only once the
broker has acknowledged the event.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import faust
import orjson

from ..config import Settings
from ..processors.redact import redact_secrets, scrub_event, scrub_model
from ..processors.signing import Check
from ..schemas import (
    DECISION_TOPICS,
    Alert,
    DeadLetter,
    DecodeError,
    DeployEvent,
    Event,
    K8sEvent,
    LogRecord,
    MetricBatch,
    WindowPoints,
    decode,
    encode,
)
from .tables import Tables
from .topics import Topics

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from ..collectors.coalesce import Coalescer, SeriesCache
    from ..collectors.receiver import RemoteWriteReceiver
    from ..processors import MetricDetector
    from ..processors.correlate import IncidentCorrelator
    from ..processors.logs import LogPatternDetector
    from ..processors.predict import EarlyWarning
    from ..processors.rca import RootCauseAnalyzer
    from ..processors.rca_windows import WindowStore
    from ..schemas.series_refs import SeriesDirectory
    from ..web.http import Api
    from ..web.metrics import StageSensor
    from .collectors import CollectorClients
    from .ingest_k8s import K8sWatch
    from .services import Services

__all__ = ["SCRUBBED_INPUTS", "Stages", "StreamContext", "Stats"]

#: dead letters logged one by one per topic and window; the rest are summed up
DLQ_LOG_BURST = 5
DLQ_LOG_WINDOW = 60.0

#: input topics' models whose secrets are redacted when decoded (external producers
#: write these topics directly)
SCRUBBED_INPUTS: frozenset[type[Event]] = frozenset({LogRecord, Alert, DeployEvent, K8sEvent})

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


@dataclass
class Stats:
    """Counters shown in /status and exported to /metrics."""

    started: float = field(default_factory=time.time)
    events_in: Counter[str] = field(default_factory=Counter)
    events_out: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    samples_in: int = 0
    #: health entries of collectors/sinks: name -> {"ok": bool, ...}
    health: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Stages:
    """What one stage builds and other stages (or the web layer) look up, by type.

    Filled while the stages register (None: that stage is not wired, e.g. the
    knowledge base turned off or a unit test's partial app). Clients are not
    here: they are built, started and closed by :class:`~.services.Services`.
    """

    #: the web layer's read side (authentication gate, read model)
    api: Api | None = None
    metrics_registry: CollectorRegistry | None = None
    stage_sensor: StageSensor | None = None
    metric_detector: MetricDetector | None = None
    #: ``(sid, t) -> (expected, lower, upper) | None`` of the metric detector
    baseline_band: Callable[..., tuple[float, float, float] | None] | None = None
    early_warning: EarlyWarning | None = None
    series_directory: SeriesDirectory | None = None
    metrics_coalescer: Coalescer | None = None
    metrics_series_cache: SeriesCache | None = None
    remote_write_receiver: RemoteWriteReceiver | None = None
    collector_clients: CollectorClients | None = None
    log_patterns: LogPatternDetector | None = None
    correlator: IncidentCorrelator | None = None
    rca_analyzer: RootCauseAnalyzer | None = None
    rca_windows: WindowStore | None = None
    k8s_watch: K8sWatch | None = None
    #: ticket status per incident while PostgreSQL is unavailable (audit stage)
    ticket_status: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamContext:
    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables
    #: the clients, built once by their lifecycle owner
    services: Services
    stats: Stats = field(default_factory=Stats)
    #: objects other stages look up (detectors, the API), typed; clients live in ``services``
    stages: Stages = field(default_factory=Stages)
    #: highest offset decoded per (topic, partition), to count/dead-letter once
    _seen: dict[tuple[str, int], int] = field(default_factory=dict)
    #: per topic: (window start, lines logged, dead letters not logged)
    _dlq_log: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    async def decode(self, model: type[E], event: Any, stage: str = "") -> E | None:
        """Decode ``event.value`` as ``model``; on failure send it to the DLQ, return None."""
        topic = model.TOPIC
        msg = event.message
        # Several stages may consume one topic (Faust hands each of them the same
        # message): count and dead-letter each offset once, in whichever comes first.
        tp = (topic, msg.partition)
        first = msg.offset > self._seen.get(tp, -1)
        if first:
            self._seen[tp] = msg.offset
            self.stats.events_in[topic] += 1
        try:
            obj = decode(model, event.value)
            # secrets out at the source: before template mining or any other stage
            return scrub_model(obj) if model in SCRUBBED_INPUTS else obj
        except DecodeError as exc:
            if not first:
                return None
            await self.dead_letter(
                topic, event.value, exc.reason, stage=stage,
                partition=msg.partition, offset=msg.offset,
                message_key=msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else None,
            )
            return None

    async def dead_letter(self, topic: str, value: bytes | None, error: str, **kw: Any) -> None:
        """Produce a :class:`DeadLetter` to ``<topic>.dlq``; count it.

        Logged at most :data:`DLQ_LOG_BURST` times per topic and minute, then one
        line says how many more went to the DLQ: a flood of bad input is a counter
        and a DLQ, never a log storm.
        """
        self.stats.dlq[topic] += 1
        now = time.monotonic()
        start, logged, quiet = self._dlq_log.get(topic, (now, 0, 0))
        if now - start >= DLQ_LOG_WINDOW:
            if quiet:
                log.warning("%d more dead letters on %s in the last %.0f s (not logged one by one)",
                            quiet, topic, now - start, extra={"topic": topic})
            start, logged, quiet = now, 0, 0
        if logged < DLQ_LOG_BURST:
            logged += 1
            log.warning("dead letter on %s: %s", topic, error[:300],
                        extra={"topic": topic, "offset": kw.get("offset")})
        else:
            quiet += 1
        self._dlq_log[topic] = (start, logged, quiet)
        if isinstance(value, bytes | bytearray):  # the DLQ is a topic too: no secrets on it
            try:
                value = redact_secrets(bytes(value).decode("utf-8")).encode("utf-8")
            except UnicodeDecodeError:
                pass
        dl = DeadLetter.of(topic, value, redact_secrets(error), **kw)
        await self.topics.dlq(topic).send(key=topic.encode(), value=encode(dl))

    async def decode_signed(self, model: type[E], event: Any,
                            stage: str = "") -> tuple[E | None, Check, dict[str, Any]]:
        """:meth:`decode`, plus the signature check of the raw JSON object and that object."""
        obj = await self.decode(model, event, stage)
        if obj is None:
            return None, Check(False, None, "undecodable"), {}
        try:
            raw = orjson.loads(event.value)
        except orjson.JSONDecodeError:  # pragma: no cover - decode() accepted it
            raw = {}
        return obj, self.services.keys.keyring.verify(raw), raw

    def encode(self, event: Event) -> bytes:
        """The bytes of ``event``; decision events signed with the agent's key."""
        if isinstance(event, MetricBatch):  # labels are redacted by the collectors
            return encode(event)
        if isinstance(event, WindowPoints):  # redacted once per series by the rollup
            return encode(event)
        data = scrub_event(event.model_dump(mode="json"))  # one redaction before any topic
        if event.TOPIC in DECISION_TOPICS:
            return self.services.keys.signer.sign_bytes(data)
        return orjson.dumps(data)

    async def send(self, event: Event) -> Any:
        """Produce ``event`` to its topic with its key; returns the delivery future."""
        key = event.key()
        self.stats.events_out[event.TOPIC] += 1
        return await self.topics[event.TOPIC].send(
            key=key.encode() if key is not None else None, value=self.encode(event)
        )

    async def send_acked(self, event: Event) -> Any:
        """Produce ``event`` and wait until the broker has acknowledged it."""
        fut = await self.send(event)
        return await fut
