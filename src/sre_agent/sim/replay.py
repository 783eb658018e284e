"""Replay a timeline into the real pipeline and close the loop (the only I/O here).

:class:`Replayer` produces the platform's events to the broker in accelerated
sample time and reads every output topic back. History is blasted as fast as
the broker takes it; clean gaps and scenario windows run in *lockstep*: after
each step it waits (via the worker's ``/status`` counters) until the worker
has consumed what was sent and the stages downstream have gone quiet, so that
every output is stamped with the sample time it belongs to and an action
reaches the platform at the right moment. A simulated on-call
(:class:`Approver`) approves plans that need humans after a delay.

With ``cluster_port`` it serves the platform as a cluster API
(:mod:`.cluster`) that the worker's executor acts on (``sre-agent eval``):
only what the executor executes there is applied. Without it (the demo, whose
executor has no back-end) the platform applies each ``sre-actions`` event the
executor did not refuse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..processors.signing import Signer
from ..schemas import (
    DECISION_TOPICS,
    Approval,
    DecodeError,
    MetricBatch,
    SreAction,
    decode,
    encode,
    series_id,
    shard_of,
)
from .cluster import ATTRIBUTION_WAIT, ClusterServer, SimCluster
from .engine import Platform, Tick
from .scorecard import Observation, RunRecord
from .timeline import Segment, clean_intervals
from .truth import GroundTruth

__all__ = ["OUTPUT_TOPICS", "Approver", "Replayer"]

log = logging.getLogger(__name__)

#: what the pipeline emits and the eval reads back
OUTPUT_TOPICS = ("anomalies", "predictions", "incidents", "rca-results", "action-plans",
                 "sre-actions", "action-results", "audit")
#: executor verdicts that mean "not done" (its safety gates held the action back)
REFUSED = ("blocked", "rate_limited", "skipped")
INPUT_TOPICS = ("metrics", "logs", "k8s-events", "deploy-events", "alerts", "approvals")

#: polls (0.25 s apart) with nothing moving before the end of history counts as caught up
LEARN_STILL_POLLS = 12
#: who votes, per policy (user, role)
VOTERS = {
    "ONE_APPROVAL": [("oncall-sim", "oncall")],
    "TWO_SRE_ONE_LEAD": [("sre-sim-1", "sre"), ("sre-sim-2", "sre"), ("lead-sim", "lead")],
}


#: the signing key of simulated stacks (:func:`sre_agent.sim.stack.agent_env` gives it to
#: the worker): made once per process, never used outside a simulation
SIM_SIGNER = Signer.generate()


@dataclass
class Approver:
    """A simulated on-call that approves every plan needing humans after ``delay``.

    It never judges the plan (that would be the eval doing the agent's work);
    BLOCKED plans cannot be approved and are left alone.
    """

    delay: float = 300.0
    enabled: bool = True
    _due: list[tuple[float, Approval]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def consider(self, plan: dict[str, Any], now: float) -> None:
        pid = str(plan.get("plan_id", ""))
        policy = plan.get("policy")
        if not self.enabled or pid in self._seen or policy not in VOTERS:
            return
        if plan.get("status", "pending") != "pending":
            return
        self._seen.add(pid)
        for i, (user, role) in enumerate(VOTERS[policy]):
            at = now + self.delay * (1 + 0.5 * i)
            self._due.append((at, Approval(
                plan_id=pid, decision="approve", user=user, role=role,  # type: ignore[arg-type]
                source="cli", comment="simulated on-call (sre-agent eval)",
                incident_id=str(plan["incident_id"]) if plan.get("incident_id") else None,
                time=datetime.fromtimestamp(at, UTC))))

    def due(self, now: float) -> list[Approval]:
        ready = [a for t, a in self._due if t <= now]
        self._due = [(t, a) for t, a in self._due if t > now]
        return ready


class Replayer:
    """Drives one timeline through a running worker.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers (``host:port``).
    prefix
        The worker's topic prefix.
    status_url
        The worker's ``/status`` (lockstep); None replays without waiting.
    """

    def __init__(self, bootstrap: str, prefix: str, status_url: str | None, platform: Platform,
                 segments: Sequence[Segment], *, shards: int = 16,
                 approver: Approver | None = None, history_chunk: int = 30,
                 settle_timeout: float = 10.0, catchup_timeout: float = 600.0,
                 protected: Sequence[str] = (),
                 progress: Callable[[str], None] | None = None,
                 signer: Signer | None = None, cluster_port: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.status_url = status_url
        self.p = platform
        self.segments = list(segments)
        self.shards = shards
        self.approver = approver or Approver()
        self.history_chunk = history_chunk
        self.settle_timeout = settle_timeout
        self.catchup_timeout = catchup_timeout
        self.protected = list(protected)
        self.progress = progress or (lambda msg: None)
        #: the simulated on-call's votes are signed like the API signs real ones (the
        #: agent refuses unsigned decision events); default: the sim stack's key
        self.signer = signer or SIM_SIGNER
        self.clock = platform.t
        self.produced: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.observations: list[Observation] = []
        self.sent: list[Observation] = []
        self.health: list[tuple[float, list[str]]] = []
        self.truths: list[GroundTruth] = []
        self.dlq: Counter[str] = Counter()
        self.settle_timeouts = 0
        self._shard: dict[int, int] = {}
        self._seq = 0
        #: topic -> how many of the worker's agents read it (learned after the history)
        self.fanout: dict[str, float] = {}
        self.timing: Counter[str] = Counter()
        #: sre-actions waiting for the executor's verdict: action id -> (action, received)
        self._awaiting: dict[str, tuple[SreAction, float]] = {}
        #: topics the worker's stages read (from /status)
        self._readers: set[str] = set()
        self._producer: Any = None
        self._http: Any = None
        #: the simulated cluster the worker's executor acts on (``cluster_port``): actions
        #: reach the platform only through it, when the executor acts; without it the
        #: platform applies each sre-action the executor did not refuse
        self.cluster: SimCluster | None = None
        self._cluster_server: ClusterServer | None = None
        if cluster_port is not None:
            self.cluster = SimCluster(platform, clock=lambda: self.clock, lookup=self._action_of)
            self._cluster_server = ClusterServer(self.cluster, cluster_port,
                                                 attribution_wait=ATTRIBUTION_WAIT)

    # ------------------------------------------------------------ plumbing
    def _action_of(self, step: Any) -> SreAction | None:
        """The latest sre-action awaiting its verdict whose step is ``step``."""
        want = step.model_dump()
        found = [(got, a) for a, got in self._awaiting.values()
                 if a.step.model_dump() == want
                 and (self.cluster is None or a.action_id not in self.cluster.applied)]
        return max(found, key=lambda x: x[0])[1] if found else None

    def _topic(self, name: str) -> str:
        return self.prefix + name

    async def _send(self, name: str, event: Any) -> None:
        key = event.key()
        value = (self.signer.sign_bytes(event.model_dump(mode="json"))
                 if name in DECISION_TOPICS else encode(event))
        await self._producer.send(self._topic(name), value=value,
                                  key=key.encode() if key is not None else None)
        self.produced[name] += 1

    async def _status(self) -> dict[str, Any] | None:
        if self.status_url is None:
            return None
        try:
            async with self._http.get(self.status_url) as r:
                return dict(await r.json(loads=orjson.loads))
        except Exception:  # worker busy or restarting: the caller retries
            return None

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer

        names = {self._topic(n): n for n in OUTPUT_TOPICS}
        names.update({self._topic(f"{n}.dlq"): f"{n}.dlq" for n in INPUT_TOPICS})
        cons = AIOKafkaConsumer(*names, bootstrap_servers=self.bootstrap, group_id=None,
                                auto_offset_reset="earliest", metadata_max_age_ms=2000)
        await cons.start()
        try:
            while True:
                batches = await cons.getmany(timeout_ms=200, max_records=2000)
                for tp, recs in batches.items():
                    name = names.get(tp.topic, tp.topic)
                    for r in recs:
                        self._observe(name, r.value)
        finally:
            await cons.stop()

    def _observe(self, name: str, value: bytes | None) -> None:
        self.received[name] += 1
        if name.endswith(".dlq"):
            self.dlq[name[:-4]] += 1
            log.warning("simulated input rejected on %s: %s", name, (value or b"")[:300])
            return
        try:
            payload = orjson.loads(value or b"null")
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        self.observations.append(Observation(name, self.clock, payload))
        if name == "sre-actions":
            try:
                act = decode(SreAction, value or b"")
            except DecodeError as exc:
                log.warning("undecodable sre-action: %s", exc.reason)
                return
            if "sre-actions" in self._readers or self.cluster is not None:
                self._awaiting[act.action_id] = (act, self.clock)  # the executor decides
            else:
                self.p.submit(act, self.clock)
        elif name == "action-results":
            pending = self._awaiting.pop(str(payload.get("action_id")), None)
            if pending is not None:
                status = str(payload.get("status"))
                verdict = f"{status}: {payload.get('detail', '')}"
                if self.cluster is not None:
                    # the executor acted on the cluster or did not: nothing more to apply
                    if pending[0].action_id not in self.cluster.applied:
                        self.p.refuse(pending[0], self.clock, verdict)
                elif status in REFUSED:
                    self.p.refuse(pending[0], self.clock, verdict)
                else:
                    self.p.submit(pending[0], pending[1])
        elif name == "action-plans":
            self.approver.consider(payload, self.clock)

    # ------------------------------------------------------------ waiting
    def _pending(self, ins: dict[str, int], outs: dict[str, int]) -> bool:
        """Is any message produced (by us or a stage) not yet consumed by all its readers?"""
        for t, n_in in ins.items():
            total = outs.get(t, 0) + self.produced.get(t, 0)
            if n_in < self.fanout.get(t, 1) * total:
                return True
        return any(self.received.get(t, 0) < n for t, n in outs.items() if t in OUTPUT_TOPICS)

    def _learn_fanout(self, ins: dict[str, int], outs: dict[str, int]) -> None:
        """How many agents read each topic, from a quiet worker's counters."""
        for t, n_in in ins.items():
            total = outs.get(t, 0) + self.produced.get(t, 0)
            if total:
                self.fanout[t] = max(1, round(n_in / total))

    async def settle(self, timeout: float, quiet: float = 0.015, learn: bool = False) -> bool:
        """Wait until every message was consumed by every stage reading it, then quiet.

        ``learn``: the worker is known to go idle (end of history); take its
        per-topic reader counts from the counters once it has been still for
        a while.
        """
        if self.status_url is None:
            await asyncio.sleep(0)
            return True
        end = time.monotonic() + timeout
        prev: tuple[int, int] | None = None
        st: dict[str, Any] | None = None
        ins: dict[str, int] = {}
        outs: dict[str, int] = {}
        still = 0
        while time.monotonic() < end:
            st = await self._status()
            self.timing["polls"] += 1
            if st is not None:
                ins, outs = st.get("events_in", {}), st.get("events_out", {})
                self._readers = set(ins)
                sig = (sum(ins.values()), sum(outs.values()))
                if learn:
                    # caught up: every input read, no consumer lag, counters still for a
                    # while (a stage of a loaded worker can pause for a second)
                    fed = all(ins.get(t, 0) >= n for t, n in self.produced.items() if t in ins) \
                        and not st.get("lag_total", 0)
                    still = still + 1 if fed and sig == prev else 0
                    if still >= LEARN_STILL_POLLS:
                        self._learn_fanout(ins, outs)
                        return True
                elif not self._pending(ins, outs):
                    if sig == prev:
                        return True
                else:
                    sig = None  # type: ignore[assignment]
                prev = sig
            await asyncio.sleep(quiet)
        self.settle_timeouts += 1
        if st is not None and not learn:
            # a stage that reads only some of a topic's messages: accept what it reads
            for t, n_in in ins.items():
                total = outs.get(t, 0) + self.produced.get(t, 0)
                if total and n_in < self.fanout.get(t, 1) * total:
                    log.warning("topic %s: stages read %d of %d messages; not waiting for it",
                                t, n_in, total)
                    self.fanout[t] = n_in / total
        return False

    # ------------------------------------------------------------ producing
    def _batches(self, ticks: Sequence[Tick]) -> list[MetricBatch]:
        by_shard: dict[int, dict[int, dict[str, Any]]] = {}
        for tick in ticks:
            for name, labels, value in tick.samples:
                k = id(labels)
                shard = self._shard.get(k)
                if shard is None:
                    shard = self._shard[k] = shard_of(series_id(name, labels), self.shards)
                series = by_shard.setdefault(shard, {})
                s = series.get(k)
                if s is None:
                    s = series[k] = {"name": name, "labels": labels, "points": []}
                s["points"].append((tick.t, value))
        out = []
        last = ticks[-1].t
        for shard, series in sorted(by_shard.items()):
            self._seq += 1
            out.append(MetricBatch(event_id=f"sim{self.p.seed}-m{self._seq:09d}",
                                   time=datetime.fromtimestamp(last, UTC), source="sim",
                                   shard=shard, series=list(series.values())))
        return out

    async def _emit(self, ticks: Sequence[Tick]) -> None:
        for b in self._batches(ticks):
            await self._send("metrics", b)
        for tick in ticks:
            for ev in tick.logs:
                await self._send("logs", ev)
            for ev in tick.k8s:
                await self._send("k8s-events", ev)
                if ev.type == "Warning":
                    self.sent.append(Observation("k8s-events", tick.t, {"reason": ev.reason}))
            for ev in tick.deploys:
                await self._send("deploy-events", ev)
            for ev in tick.alerts:
                await self._send("alerts", ev)
                if ev.status == "firing":
                    self.sent.append(Observation("alerts", tick.t, {"name": ev.name}))
            bad = sorted(n for n, ok in tick.health.items() if not ok)
            if not self.health or self.health[-1][1] != bad:
                self.health.append((tick.t, bad))
        for a in self.approver.due(self.clock):
            await self._send("approvals", a)
            self.observations.append(Observation("approvals", self.clock,
                                                 a.model_dump(mode="json")))
        await self._producer.flush()

    async def _run_segment(self, seg: Segment) -> None:
        p = self.p
        if seg.kind == "scenario" and seg.scenario is not None:
            self.truths.append(seg.scenario.install(p, seg.start))
        if seg.kind == "history":
            wall = time.monotonic()
            chunk: list[Tick] = []
            while p.t < seg.end:
                self.clock = p.t
                chunk.append(p.step())
                if len(chunk) >= self.history_chunk:
                    await self._emit(chunk)
                    chunk = []
            if chunk:
                await self._emit(chunk)
            sent = time.monotonic() - wall
            ok = await self.settle(self.catchup_timeout, quiet=0.25, learn=True)
            self.progress(f"history replayed ({(seg.end - seg.start) / 3600:.0f} h of samples "
                          f"sent in {sent:.0f} s); worker "
                          f"{'caught up' if ok else 'NOT caught up'} after "
                          f"{time.monotonic() - wall:.0f} s")
            return
        while p.t < seg.end:
            self.clock = p.t
            t0 = time.monotonic()
            await self._emit([p.step()])
            t1 = time.monotonic()
            await self.settle(self.settle_timeout)
            for aid, (act, got) in list(self._awaiting.items()):
                if self.cluster is not None:
                    break  # only the executor acts on the cluster (a verdict may take long)
                if got < self.clock - p.step_seconds:  # no verdict came: act on the event
                    del self._awaiting[aid]
                    p.submit(act, got)
            self.timing["emit"] += t1 - t0
            self.timing["settle"] += time.monotonic() - t1
            self.timing["steps"] += 1
        if seg.kind == "scenario":
            p.end_faults(seg.end)

    async def run(self) -> RunRecord:
        import aiohttp
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5,
                                          max_request_size=8 * 1024 * 1024)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await self._producer.start()
        if self._cluster_server is not None:
            await self._cluster_server.start()
        consumer = asyncio.create_task(self._consume())
        wall = time.monotonic()
        try:
            for seg in self.segments:
                t0 = time.monotonic()
                await self._run_segment(seg)
                if seg.kind == "scenario" and seg.scenario is not None:
                    self.progress(f"scenario {seg.scenario.name} done "
                                  f"({(seg.end - seg.start) / 60:.0f} sample-min in "
                                  f"{time.monotonic() - t0:.0f} s)")
            await self.settle(self.settle_timeout)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await self._producer.stop()
            await self._http.close()
            if self._cluster_server is not None:
                await self._cluster_server.stop()
        hist = [s for s in self.segments if s.kind == "history"]
        return RunRecord(
            truths=self.truths, observations=self.observations,
            run_start=self.segments[0].start, run_end=self.segments[-1].end,
            scored_from=hist[0].end if hist else self.segments[0].start,
            clean=clean_intervals(self.segments, self.truths), sent=self.sent,
            outcomes=[o.to_dict() for o in self.p.ledger], health=self.health,
            protected=self.protected, step=self.p.step_seconds,
            info={"seed": self.p.seed, "step_seconds": self.p.step_seconds,
                  "components": [c.name for c in self.p.topo],
                  "produced": dict(self.produced), "received": dict(self.received),
                  "dlq": dict(self.dlq), "settle_timeouts": self.settle_timeouts,
                  "fanout": dict(self.fanout),
                  "lockstep": {k: round(v, 1) for k, v in self.timing.items()},
                  "cluster": (dict(self.cluster.calls) if self.cluster is not None
                              else "none (the platform applied what the executor passed)"),
                  "wall_seconds": round(time.monotonic() - wall, 1)},
        )
