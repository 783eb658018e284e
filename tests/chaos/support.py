"""Shared pieces of the fault tests: a private broker, workers on it, a metric
workload with a known answer, and readers that count what came out.

The workload is deterministic: every series is a steady wiggle, some get
spikes at known sample indexes. The expected anomalies are computed by running
the pure detector (:class:`sre_agent.processors.MetricDetector`) over the same
samples, so the pipeline under faults is held to what the processor says with
no faults at all: the same ``(anomaly_id, status)`` pairs, each exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from sre_agent.config import AnomalySettings
from sre_agent.devstack import KafkaBroker, default_cache_dir
from sre_agent.processors import MetricDetector
from sre_agent.schemas import MetricBatch, encode, series_id, shard_of
from tests.conftest import WorkerProcess, unique, worker_env

__all__ = [
    "Workload",
    "ChaosProducer",
    "own_broker",
    "make_worker",
    "read_all",
    "pair_counts",
    "probe_learned",
]

T0 = 1_763_000_000.0
STEP = 15.0


def wiggle(i: int) -> float:
    return 50.0 + (i % 5) * 0.5


@dataclass
class Workload:
    """``series`` steady series over ``points`` samples; every ``spiky``-th one spikes.

    Messages are ``MetricBatch`` per (time index, shard), keyed by shard like a
    collector would send them.
    """

    series: int = 24
    points: int = 400
    shards: int = 4
    spiky: int = 2
    spike_at: tuple[int, ...] = (150, 300)
    spike_len: int = 5
    metric: str = "latency_ms"
    tag: str = field(default_factory=lambda: unique("s"))

    def labels(self, j: int) -> dict[str, str]:
        return {"service": f"svc{j}", "run": self.tag}

    def sid(self, j: int) -> str:
        return series_id(self.metric, self.labels(j))

    def value(self, j: int, i: int) -> float:
        if j % self.spiky == 0:
            for k, start in enumerate(self.spike_at):
                if start + j % 7 <= i < start + j % 7 + self.spike_len:
                    return 900.0 + 10 * k
        return wiggle(i)

    def messages(self, start: int = 0, stop: int | None = None) -> list[tuple[bytes, MetricBatch]]:
        """Messages of sample indexes ``start..stop`` (all points by default)."""
        by_shard: dict[int, list[int]] = {}
        for j in range(self.series):
            by_shard.setdefault(shard_of(self.sid(j), self.shards), []).append(j)
        out = []
        for i in range(start, self.points if stop is None else stop):
            for shard, js in sorted(by_shard.items()):
                out.append((str(shard).encode(), MetricBatch(source="chaos", shard=shard, series=[
                    {"name": self.metric, "labels": self.labels(j),
                     "points": [(T0 + STEP * i, self.value(j, i))]} for j in js])))
        return out

    def expected(self, settings: AnomalySettings | None = None) -> Counter[tuple[str, str]]:
        """(anomaly_id, status) pairs the pure detector emits for this workload."""
        det = MetricDetector(settings or AnomalySettings())
        pairs: Counter[tuple[str, str]] = Counter()
        for _key, batch in self.messages():
            for a in det.update(batch):
                pairs[(a.anomaly_id, a.status)] += 1
        return pairs


# ------------------------------------------------------------------ broker + workers
@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker for this module alone: restarting it disturbs no other test."""
    broker = KafkaBroker(tmp_path_factory.mktemp("chaos-kafka"), default_cache_dir(), heap="512m")
    broker.start()
    yield broker
    broker.stop(clean=True)


def make_worker(broker: KafkaBroker, workdir: Path, prefix: str, name: str,
                extra_env: dict[str, str] | None = None) -> WorkerProcess:
    """A real ``sre-agent worker`` on ``broker`` (same env as ``worker_factory``)."""
    wdir = workdir / name
    wdir.mkdir(parents=True, exist_ok=True)
    env = worker_env(broker.url, prefix, wdir)
    env.update(extra_env or {})
    return WorkerProcess(env, wdir)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``workers(broker, name, prefix)``: made workers are stopped at teardown."""
    made: list[WorkerProcess] = []

    def make(broker: KafkaBroker, name: str, prefix: str, **kw: Any) -> WorkerProcess:
        w = make_worker(broker, tmp_path, prefix, name, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


# ------------------------------------------------------------------ producing and reading
class ChaosProducer:
    """An idempotent producer that rides out a broker restart (no input lost or doubled)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._p: Any = None
        self.sent = 0

    async def __aenter__(self) -> ChaosProducer:
        from aiokafka import AIOKafkaProducer

        self._p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5,
                                   enable_idempotence=True, acks="all",
                                   request_timeout_ms=120_000, retry_backoff_ms=200)
        await self._p.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._p.stop()

    async def send_all(self, topic: str, messages: list[tuple[bytes, MetricBatch]],
                       rate: float | None = None) -> None:
        """Send in order; ``rate`` messages/second when given."""
        t0 = time.monotonic()
        futs = []
        for n, (key, batch) in enumerate(messages):
            futs.append(await self._p.send(topic, value=encode(batch), key=key))
            self.sent += 1
            if rate:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*futs)


async def read_all(bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 60.0, quiet: float = 2.0) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until ``until(msgs)`` holds and nothing new
    arrived for ``quiet`` seconds (so late duplicates are seen), or timeout."""
    from aiokafka import AIOKafkaConsumer

    cons = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                            group_id=None, metadata_max_age_ms=1000,
                            isolation_level="read_committed")
    await cons.start()
    out: list[dict[str, Any]] = []
    try:
        end = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < end:
            recs = await cons.getmany(timeout_ms=300)
            got = [orjson.loads(r.value) for batch in recs.values() for r in batch]
            if got:
                out.extend(got)
                last_new = time.monotonic()
            elif until(out) and time.monotonic() - last_new >= quiet:
                break
    finally:
        await cons.stop()
    return out


def pair_counts(anomalies: list[dict[str, Any]], tag: str) -> Counter[tuple[str, str]]:
    return Counter((a["anomaly_id"], a["status"]) for a in anomalies
                   if a.get("labels", {}).get("run") == tag)


def compare(expected: Counter[tuple[str, str]], got: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Missing, duplicated and unexpected pairs (empty lists mean exactly-once in effect)."""
    return {
        "missing": sorted(k for k in expected if k not in got),
        "duplicated": sorted((k, n) for k, n in got.items() if n > 1),
        "unexpected": sorted(k for k in got if k not in expected),
    }


def learned(worker: WorkerProcess, tag: str) -> dict[str, int]:
    """Series id -> samples learned, from the worker's baseline API (series in memory)."""
    items = worker.get_json(f"/api/baselines?series={tag}&limit=1000")["items"]
    return {it["series"]: it["n"] for it in items}


async def group_settled(bootstrap: str, group: str, members: int) -> bool:
    """The consumer group is Stable with exactly ``members`` members: a killed worker's
    session has expired and the rebalance that followed is complete."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        for g in response.groups:  # (error_code, group, state, protocol_type, protocol, members, ..)
            if g[1] == group:
                return bool(g[2] == "Stable" and len(g[5]) == members)
    return False


#: worker.log lines worth printing when a worker never becomes ready after a takeover
RECOVERY_LOG_WORDS = ("generation id", "Recovery", "Highwater", "offsets at start", "No event",
                      "Restarting", "remaining", "Worker ready", "Seek", "revoke", "Assigned",
                      "partition", "rebalance", "\u2502")


async def _read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the start to the end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await cons.start()
    try:
        parts = cons.partitions_for_topic(topic)
        if not parts:
            await cons._client.force_metadata_update()
            parts = cons.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        cons.assign(tps)
        await cons.seek_to_beginning(*tps)
        ends = await cons.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await cons.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                break
            for recs in (await cons.getmany(timeout_ms=500)).values():
                out.extend(recs)
        return out
    finally:
        await cons.stop()


async def state_report(bootstrap: str, prefix: str, app_id: str, wl: Workload) -> list[str]:
    """For a failure message: the ``baselines`` changelog in order, each saved position
    set against the leaves before it (the samples each shard's messages below the
    position carry, and the last sample index and count each series' saved state has).
    A position whose leaves lack samples below it, or a series whose count is not its
    last index + 1, shows where learned samples went missing: in the state the killed
    worker saved, or in what the survivor restored."""
    from sre_agent.processors.blobs import unpack_leaf

    import numpy as np

    index = {wl.sid(j): j for j in range(wl.series)}
    shard_of_message: dict[int, list[tuple[int, int, int]]] = {}
    for r in await _read_topic(bootstrap, prefix + "metrics"):
        try:
            batch = orjson.loads(r.value)
            i = round((batch["series"][0]["points"][0][0] - T0) / STEP)
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        shard_of_message.setdefault(r.partition, []).append((r.offset, int(batch["shard"]), i))
    lines: list[str] = []
    leaves: dict[int, dict[int, tuple[int, int]]] = {}
    for r in await _read_topic(bootstrap, f"{app_id}-baselines-changelog"):
        key = r.key.decode() if r.key else ""
        p = r.partition
        if r.value and r.value[:2] == b"L2":
            for sid, state in unpack_leaf(r.value).items():
                if sid in index:
                    row = np.frombuffer(state[1:17], dtype="<f8")
                    leaves.setdefault(p, {})[index[sid]] = (int(row[0]), round((row[1] - T0) / STEP))
            lines.append(f"  p{p} o{r.offset} {key} ({len(r.value)} B)")
        elif key.endswith("/position") and r.value:
            pos = int(r.value)
            below: dict[int, int] = {}
            for offset, shard, i in shard_of_message.get(p, []):
                if offset < pos:
                    below[shard] = max(below.get(shard, -1), i)
            saved = leaves.get(p, {})
            gaps = sorted(j for j, (n, last) in saved.items() if n != last + 1)
            behind = min((last for _, last in saved.values()), default=None)
            flag = ""
            if below and behind is not None and behind < min(below.values()):
                flag += "  <-- leaves behind the position"
            if gaps:
                flag += f"  <-- count != last index + 1 for series {gaps}"
            lines.append(f"  p{p} o{r.offset} position {pos}: messages below it reach index "
                         f"{below} per shard; leaves' last indexes "
                         f"{sorted({last for _, last in saved.values()})}{flag}")
    return lines


async def probe_learned(bootstrap: str, prefix: str, wl: Workload, workers: list[WorkerProcess],
                        wait_for: Callable[..., Any]) -> dict[str, int]:
    """Send one more sample of every series (so each is loaded from the table where it
    lives) and return samples learned per series over the live workers: a series whose
    state was intact has learned exactly ``points + 1``.

    The baseline API shows series in memory, and a rebalance drops a revoked partition's
    series from memory (they stay in the table). So the probe goes out only once the
    group is settled: a killed member expired, the live workers hold every metrics
    partition and are ready. Before this, a probe processed just before the rebalance
    that followed a kill left its series out of every worker's memory (the survivor's
    own partition, revoked and assigned back with nothing new to read)."""
    live = [w for w in workers if w.proc is not None and w.proc.poll() is None]
    group = live[0].env["SRE_AGENT_WORKER__APP_ID"]
    parts = int(live[0].env["SRE_AGENT_KAFKA__PARTITIONS"])

    def serving() -> bool:
        sts = [w.status() for w in live]
        held = {a for st in sts for a in st["broker"]["assigned"]
                if a.startswith(prefix + "metrics:")}
        return len(held) == parts and all(st["recovery"]["ready"] for st in sts)

    await wait_for(lambda: group_settled(bootstrap, group, len(live)), timeout=120)
    try:
        await wait_for(serving, timeout=120)
    except AssertionError:
        # for the failure message: each live worker's recovery as its log tells it
        for w in live:
            st = w.status()
            print(f"[serving] {w.workdir.name}: recovery={st['recovery']} "
                  f"handover={st.get('handover')}")
            print(f"[serving] {w.workdir.name} log (recovery lines):")
            lines = [line for line in w.log.read_text(errors="replace").splitlines()
                     if any(k in line for k in RECOVERY_LOG_WORDS)]
            for line in lines[-400:]:
                print("   ", line[:400])
        raise
    async with ChaosProducer(bootstrap) as producer:
        await producer.send_all(prefix + "metrics", wl.messages(wl.points, wl.points + 1))

    def union() -> dict[str, int]:
        n: dict[str, int] = {}
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                n.update(learned(w, wl.tag))
        return n

    try:
        await wait_for(lambda: len(union()) == wl.series
                       and min(union().values()) >= wl.points + 1, timeout=120)
    except AssertionError:
        # for the failure message: where each live worker stands on the metrics topic
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                st = w.status()
                print(f"[probe] {w.workdir.name}: samples_in={st['samples_in']} "
                      f"assigned={[a for a in st['broker']['assigned'] if 'metrics' in a]} "
                      f"lag={ {k: v for k, v in st['lag'].items() if 'metrics' in k} } "
                      f"recovery={st['recovery']}")
                # a series short of points + 1: did it learn the probe (last_t) or not?
                items = w.get_json(f"/api/baselines?series={wl.tag}&limit=1000")["items"]
                short = {it["series"]: (it["n"], (it["last_t"] - T0) / STEP) for it in items
                         if it["n"] < wl.points + 1}
                print(f"[probe] {w.workdir.name}: short series (n, last index): {short}")
        # where the missing samples went: the saved state's history on the changelog
        try:
            for line in await state_report(bootstrap, prefix, group, wl):
                print("[state]", line)
        except Exception as exc:  # noqa: BLE001 - a report, never the failure itself
            print(f"[state] no report: {type(exc).__name__}: {exc}")
    return union()
