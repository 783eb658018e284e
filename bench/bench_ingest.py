"""The production shape: Prometheus remote-write -> worker -> anomalies, at full speed.

Apache Kafka from :mod:`sre_agent.devstack` and real ``sre-agent worker``
subprocesses on this machine. Requests are real remote-write 1.0 bodies
(``prometheus.WriteRequest``, protobuf + snappy) of ``--per-request`` samples
(Prometheus' default 2,000), every series once per round, posted to
``/api/v1/write`` by ``--connections`` concurrent senders that retry on 503
(as Prometheus does). Pre-built before timing, so the sender costs little.

1. **worker**: ``--rounds`` rounds of ``--series`` series into one worker
   (receiver + coalescer + producer + consumer + detector + early warning +
   checkpoints, every stage of the app running); the last round spikes one
   series per shard: their anomalies mark the end. samples/s from the first
   post to the last marker anomaly, and the worker's CPU µs per sample. Before
   them ``--warmup-rounds`` (1) rounds make the series known and are timed apart
   (CPU per new series): the rounds then measure the steady state.
2. **ceiling**: a decode-only consumer reads the ``metrics`` messages the
   worker produced, in this process: ``MetricBatch`` decode + refs resolved
   (the warm-up's messages untimed).
3. **where the worker's CPU goes**, in-process on the same data: receive
   (remote-write decode + coalescing + encoding), consumer decode, detector
   (the model), early warning, the stream RCA's windows (the detection stage's
   bucket partials, every worker's feed of the whole ``rca-windows`` topic);
   checkpoints from the worker's own counters (``/status`` health.state: CPU,
   changelog bytes and records per sample saved); the rest is Faust, Kafka
   clients, aiohttp.
4. **latency**: posted at half the worker's rate for ``--latency-seconds``
   with a marker spike every 0.2 s: p50/p99 of post -> anomaly produced.
5. **memory**: RSS above the empty worker (measured when ready) per series;
   ``--memory-series`` (default 100,000) in a fresh worker, ``--memory-rounds``
   rounds, until every sample of them is checkpointed, and again once the producer
   sent what it still held then ("settled"). Broken down by the worker's
   memory report (``streams/memory_report.py``: kernel, glibc malloc, RocksDB; Python
   under ``PYTHONTRACEMALLOC=1``). ``--memory-only`` runs this part alone;
   ``--memory-env 'K=V;K=V'`` adds arms with other worker settings, run one after the
   other (``--memory-repeat`` times).
6. **checkpoint interval** in the production shape: ``--ab-series`` series,
   each once per ``--ab-scrape`` seconds spread over it, posted to workers
   side by side that differ only in ``worker.checkpoint_interval``
   (``--ab-intervals``): CPU and changelog bytes per sample.
7. **scale-out**: two workers in one group on fresh topics, the same load
   posted to both: samples/s ratio two / one, and CPU µs per sample.

The machine is 2 shared cores: absolute rates move 3-4x between runs;
compare the ratios and CPU per sample measured in one run.

Run::

    python bench/bench_ingest.py                 # everything, ~10 min
    python bench/bench_ingest.py --skip-memory --skip-scale --rounds 40
    python bench/bench_ingest.py --json /tmp/ingest.json

Figures go to docs/benchmarks.md ("Ingest").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cramjam
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cognition as bc  # noqa: E402  (worker spawn/status helpers)

from sre_agent.collectors.coalesce import Coalescer, SeriesCache  # noqa: E402
from sre_agent.collectors.prompb import WriteRequest  # noqa: E402
from sre_agent.collectors.remote_write import decode_write_request  # noqa: E402
from sre_agent.config import load_settings  # noqa: E402
from sre_agent.schemas import MetricBatch, decode, series_id, shard_of  # noqa: E402
from sre_agent.schemas.telemetry import series_key  # noqa: E402
from sre_agent.schemas.series_refs import SeriesDirectory  # noqa: E402

TOKEN = "bench-ingest-token"
T0_MS = 1_763_000_000_000
SPIKE = 500.0


# ====================================================================== load
class Load:
    """``series`` series with Prometheus-like labels; bodies of ``per_request`` samples."""

    def __init__(self, series: int, per_request: int, shards: int, step_ms: int = 15_000,
                 seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.per_request, self.step_ms = per_request, step_ms
        self.labels: list[list[tuple[str, str]]] = []
        self.sids: list[str] = []
        self.shard: list[int] = []
        for j in range(series):
            name = "container_memory_ratio" if j % 10 == 0 else "http_request_duration_ms"
            labels = {"instance": f"10.{j // 65536 % 256}.{j // 256 % 256}.{j % 256}:9090",
                      "job": "kubernetes-pods", "namespace": "prod", "pod": f"pod-{j}",
                      "service": f"svc{j % 200}"}
            self.labels.append([("__name__", name), *sorted(labels.items())])
            sid = series_id(name, labels)
            self.sids.append(sid)
            self.shard.append(shard_of(sid, shards))
        self.round = 0

    def value(self, j: int) -> float:
        return (0.5 + 0.001 * self.rng.random() if j % 10 == 0
                else 50.0 + self.rng.gauss(0.0, 1.0))

    def bodies(self, spikes: dict[int, float] | None = None) -> tuple[list[bytes], int]:
        """One round: every series once, cut into requests; ``spikes`` j -> value."""
        t = T0_MS + self.round * self.step_ms
        self.round += 1
        out, spikes = [], spikes or {}
        n = len(self.labels)
        for start in range(0, n, self.per_request):
            req = WriteRequest()
            for j in range(start, min(n, start + self.per_request)):
                ts = req.timeseries.add()
                for k, v in self.labels[j]:
                    ts.labels.add(name=k, value=v)
                ts.samples.add(value=spikes.get(j, self.value(j)), timestamp=t)
            out.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
        return out, t


def sample_count(load: Load) -> int:
    return len(load.labels)


# ====================================================================== posting
async def post_all(urls: list[str], bodies: list[bytes], connections: int,
                   sent_at: dict[int, float] | None = None) -> dict[str, int]:
    """Post ``bodies`` over ``connections`` senders (round-robin over ``urls``);
    503 -> wait Retry-After (capped at 0.2 s here) and resend, like Prometheus."""
    import aiohttp

    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "X-Prometheus-Remote-Write-Version": "0.1.0", "Authorization": f"Bearer {TOKEN}"}
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for i, b in enumerate(bodies):
        queue.put_nowait((i, b))
    stats = {"requests": 0, "retries": 0, "errors": 0}

    async def sender(k: int, session: aiohttp.ClientSession) -> None:
        url = urls[k % len(urls)]
        while not queue.empty():
            i, body = queue.get_nowait()
            while True:
                if sent_at is not None and i in sent_at:
                    sent_at[i] = time.time()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 204:
                        stats["requests"] += 1
                        break
                    if r.status == 503:
                        stats["retries"] += 1
                        await asyncio.sleep(0.05)
                        continue
                    stats["errors"] += 1
                    raise SystemExit(f"remote write answered {r.status}")

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(sender(k, session) for k in range(connections)))
    return stats


async def paced_post(urls: list[str], rounds: list[list[bytes]], rate: float, per_request: int,
                     connections: int) -> dict[int, float]:
    """Post request by request at ``rate`` samples/s; return request index -> send time."""
    import aiohttp

    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "Authorization": f"Bearer {TOKEN}"}
    flat = [b for r in rounds for b in r]
    interval = per_request / rate
    sent: dict[int, float] = {}
    sem = asyncio.Semaphore(connections)
    tasks = []

    async def one(i: int, body: bytes, session: aiohttp.ClientSession) -> None:
        async with sem:
            sent[i] = time.time()
            while True:
                async with session.post(urls[i % len(urls)], data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 503:
                        return
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        nxt = time.monotonic()
        for i, body in enumerate(flat):
            tasks.append(asyncio.ensure_future(one(i, body, s)))
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        await asyncio.gather(*tasks)
    return sent


# ====================================================================== anomalies
async def watch(bootstrap: str, topic: str, seen: dict[tuple[str, float], float],
                stop: asyncio.Event) -> None:
    """(series, observed) of opened anomalies -> Kafka timestamp (s)."""
    def opened(a: dict[str, Any], ts: float) -> None:
        if a.get("status") == "open":
            seen.setdefault((a["series"], round(a["observed"], 3)), ts)

    await bc.tail(bootstrap, topic, opened, stop)


async def watch_metrics(bootstrap: str, topic: str, wanted: dict[tuple[str, float], str],
                        seen: dict[tuple[str, float], float], stop: asyncio.Event) -> None:
    """Markers (series key, value) -> Kafka timestamp (s) of the ``metrics`` message that
    carried them: where the receiver's part of the latency ends."""
    def carried(m: dict[str, Any], ts: float) -> None:
        for s in (*m.get("series", ()), *m.get("refs", ())):
            for _, v in s["points"]:
                k = (s.get("id", ""), round(v, 3))
                if k in wanted:
                    seen.setdefault(k, ts)

    await bc.tail(bootstrap, topic, carried, stop, reset="latest")


# ====================================================================== ceiling
async def ceiling(bootstrap: str, topic: str, total: int, skip: int = 0) -> dict[str, Any]:
    """Decode-only consumer: every ``metrics`` message decoded, refs resolved; timed
    after the first ``skip`` samples (the worker's warm-up round, untimed there too)."""
    from aiokafka import AIOKafkaConsumer

    cons = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                            auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
                            fetch_max_bytes=64 << 20)
    await cons.start()
    directory = SeriesDirectory()
    samples = msgs = series_full = seen = 0
    values: list[bytes] = []
    t0 = cpu0 = None
    warm = 0  #: values[:warm] are the warm-up's messages
    try:
        while seen < skip + total:
            recs = await cons.getmany(timeout_ms=1000, max_records=2000)
            if not recs and t0 is not None and time.monotonic() - t0 > 120:
                break
            for batch in recs.values():
                for r in batch:
                    if t0 is None and seen >= skip:
                        t0, cpu0, warm = time.monotonic(), time.process_time(), len(values)
                    b = decode(MetricBatch, r.value)
                    got = directory.expand(b, tag=r.partition)
                    k = sum(len(s["points"]) for s in got.series)
                    seen += k
                    values.append(r.value)
                    if t0 is not None:
                        samples += k
                        series_full += len(b.series)
                        msgs += 1
    finally:
        await cons.stop()
    dt = time.monotonic() - (t0 or time.monotonic())
    cpu = time.process_time() - (cpu0 or 0.0)
    return {"samples": samples, "messages": msgs, "seconds": dt,
            "samples_per_s": samples / dt if dt else 0.0,
            "cpu_us_per_sample": cpu / max(samples, 1) * 1e6,
            "series_per_message": samples / max(msgs, 1),
            "labelled_share": series_full / max(samples, 1),
            "bytes_per_sample": sum(map(len, values[warm:])) / max(samples, 1),
            "_values": values, "_warm": warm}


async def breakdown(bodies: list[bytes], values: list[bytes], shards: int,
                    warm_bodies: list[bytes] = (), warm: int = 0,  # type: ignore[assignment]
                    rounds: int = 1, partitions: int = 4) -> dict[str, float]:
    """In-process CPU µs per sample of each part of the worker's path; ``warm_bodies``
    and ``values[:warm]`` (the warm-up round) go through every part untimed first."""
    from sre_agent.config import AnomalySettings, PredictionSettings
    from sre_agent.processors.detect import MetricDetector
    from sre_agent.processors.predict import EarlyWarning

    out: dict[str, float] = {}
    # receive: remote-write decode + coalescing + message encoding (no broker)
    cache = SeriesCache(shards)

    async def send(key: bytes, value: bytes) -> None:
        return None

    def coalescer() -> Coalescer:
        """As the worker's: the shards of one partition share messages (aiokafka's
        partitioner over ``partitions``)."""
        from aiokafka.partitioner import DefaultPartitioner

        every = list(range(partitions))
        c = Coalescer(send, shards, linger=3600, max_buffered_samples=1 << 30,
                      route=lambda s: DefaultPartitioner()(str(s).encode(), every, every))
        c.regroup()
        return c

    c = coalescer()

    async def run_receive(bodies: list[bytes]) -> int:
        nonlocal c
        n = 0
        subs = []
        for b in bodies:
            res = decode_write_request(b, cache=cache)
            n += res.samples
            subs.append(asyncio.ensure_future(c.submit(res.items)))
        await asyncio.sleep(0)
        await c.close()
        await asyncio.gather(*subs)
        c = coalescer()
        c._known = known  # what was defined stays defined: refs, as in the worker
        return n

    known = c._known
    if warm_bodies:
        await run_receive(list(warm_bodies))
    t = time.process_time()
    n = await run_receive(bodies)
    out["receive"] = (time.process_time() - t) / n * 1e6
    d = SeriesDirectory()

    def resolve(vals: list[bytes]) -> list[MetricBatch]:
        batches = []
        for v in vals:
            b = decode(MetricBatch, v)
            got = d.expand(b)
            batches.append(b.model_copy(update={"series": got.series, "refs": []})
                           if b.refs else b)
        return batches

    warm_batches = resolve(values[:warm])
    t = time.process_time()
    batches = resolve(values[warm:])
    n = sum(b.sample_count() for b in batches) or n
    out["decode"] = (time.process_time() - t) / n * 1e6
    from sre_agent.processors.blobs import BlobStore

    store, table = BlobStore(), {}
    det = MetricDetector(AnomalySettings(warmup_samples=20),
                         load=lambda sid: store.activate(0, sid, table.get))
    for b in warm_batches:
        det.update(b)
    t = time.process_time()
    for b in batches:
        det.update(b)
    out["detector"] = (time.process_time() - t) / n * 1e6
    # a checkpoint writes the leaves of every series that changed since the last one:
    # its cost per series written (the model's state bytes, the leaf records)
    sids = det.dirty_sids()
    t = time.process_time()
    table.update(store.write(0, sids, det.take, table.get))  # type: ignore[arg-type]
    out["checkpoint_per_series_written"] = (time.process_time() - t) / max(len(sids), 1) * 1e6
    out["state_bytes_per_series"] = store.stats.bytes / max(len(sids), 1)
    # a third of the series changed (a checkpoint every 5 s, a scrape every 15 s): every
    # leaf holds some of them and is written whole
    third = sids[::3]
    before = store.stats.series
    table.update(store.write(0, third, det.take, table.get))  # type: ignore[arg-type]
    out["write_amplification_third_changed"] = (store.stats.series - before) / max(len(third), 1)
    early = EarlyWarning(PredictionSettings())
    for b in warm_batches:
        early.update(b)
    t = time.process_time()
    for b in batches:
        early.update(b)
    out["early_warning"] = (time.process_time() - t) / n * 1e6
    # the stream RCA's evidence windows (streams/rca_windows.py): the detection stage
    # folds its decoded batches into bucket partials (rollup, per sample of its own
    # partitions), every worker folds the partials of the whole rca-windows topic (feed,
    # per row: at most one per series and flush). Flushed once per round here, as the
    # worker's 1 s timer does at about a round per second
    from sre_agent.processors.rca_windows import WindowStore
    from sre_agent.schemas import encode
    from sre_agent.streams.rca_windows import WindowFeed, WindowRollup, window_horizon

    st = load_settings(env={})
    rc = st.rca
    feed = WindowFeed(st, WindowStore(horizon=window_horizon(st), bucket=rc.bucket_seconds,
                                      max_series=rc.max_series, max_log_lines=rc.max_log_lines))
    rollup = WindowRollup(rc.bucket_seconds, window_horizon(st))
    per_round = max(1, len(batches) // max(1, rounds))
    for b in warm_batches:
        rollup.add_series(b.series)
    for w in rollup.flush("bench"):
        feed.add_raw("rca-windows", encode(w))
    msgs: list[bytes] = []
    t = time.process_time()
    for i, b in enumerate(batches):
        rollup.add_series(b.series)
        if (i + 1) % per_round == 0:
            msgs.extend(encode(w) for w in rollup.flush("bench"))
    msgs.extend(encode(w) for w in rollup.flush("bench"))
    out["rca_window_rollup"] = (time.process_time() - t) / n * 1e6
    t = time.process_time()
    for v in msgs:
        feed.add_raw("rca-windows", v)
    out["rca_window_feed"] = (time.process_time() - t) / n * 1e6
    return out


def inprocess_memory(n: int, shards: int = 64, rounds: int = 3) -> float:
    """RSS per series of the worker's per-series structures, in this process: receiver
    cache, coalescer, refs directory, detector and early warning (their state stores
    as in the worker), the RCA windows' rollup, fed ``rounds`` rounds."""
    import gc

    from sre_agent.config import AnomalySettings, PredictionSettings
    from sre_agent.processors.blobs import BlobStore
    from sre_agent.processors.detect import MetricDetector
    from sre_agent.processors.predict import EarlyWarning

    load = Load(n, 2000, shards)
    blobs, fblobs, none = BlobStore(), BlobStore(), {}.get
    part = [0]
    det = MetricDetector(AnomalySettings(warmup_samples=20),
                         load=lambda sid: blobs.activate(part[0], sid, none))
    early = EarlyWarning(PredictionSettings(), load=lambda sid: fblobs.activate(part[0], sid, none))
    cache, directory = SeriesCache(shards), SeriesDirectory()
    from sre_agent.streams.rca_windows import WindowRollup

    rollup = WindowRollup(60.0, 4500.0)  # the detection stage's RCA window partials
    gc.collect()
    before = rss_kib(os.getpid())

    async def feed() -> Coalescer:
        msgs: list[bytes] = []

        async def send(key: bytes, value: bytes) -> None:
            msgs.append(value)

        c = Coalescer(send, shards, linger=0.01, max_buffered_samples=1 << 30)
        for _ in range(rounds):
            for body in load.bodies()[0]:
                await c.submit(decode_write_request(body, cache=cache).items)
            for v in msgs:
                b = decode(MetricBatch, v)
                part[0] = b.shard % 4
                got = directory.expand(b, tag=part[0])
                full = b.model_copy(update={"series": got.series, "refs": []})
                det.update(full, tag=part[0])
                early.update(full, tag=part[0])
                rollup.add_series(full.series)
            rollup.flush("bench")
            directory.take_new()
            msgs.clear()
        return c

    keep = asyncio.run(feed())
    gc.collect()
    per_series = (rss_kib(os.getpid()) - before) * 1024 / n
    del keep
    return per_series


# ====================================================================== worker runs
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Run:
    """Fresh topics (prefix) and ``n`` workers in one group on the broker."""

    def __init__(self, broker: Any, work: Path, name: str, partitions: int,
                 extra: dict[str, str]) -> None:
        self.broker, self.work = broker, work / name
        self.work.mkdir(parents=True)
        self.prefix = f"{name}{int(time.time())}."
        self.partitions, self.extra = partitions, extra
        self.procs: list[Any] = []
        self.ports: list[int] = []

    async def start(self, n: int, profile: Path | None = None) -> list[float]:
        from sre_agent.devstack import free_port
        from sre_agent.streams.admin import ensure_topics

        envs = []
        for i in range(n):
            port = free_port()
            wdir = self.work / f"w{i}"
            wdir.mkdir()
            env = bc.worker_env(self.broker, wdir, self.prefix, self.partitions, port)
            env.pop("SRE_AGENT_WORKER__CHECKPOINT_INTERVAL")  # the setting's default...
            env.update({"SRE_AGENT_API__WEBHOOK_TOKEN": TOKEN, **self.extra})  # ...or --env
            envs.append(env)
            self.ports.append(port)
        await ensure_topics(load_settings(env=envs[0]))
        self.procs = [bc.spawn(env, Path(env["SRE_AGENT_WORKER__DATA_DIR"]).parent,
                               profile if i == 0 else None) for i, env in enumerate(envs)]
        boots = [await asyncio.to_thread(bc.wait_ready, p, port)
                 for p, port in zip(self.procs, self.ports, strict=True)]
        if n > 1:  # the group settles: every worker owns partitions
            await asyncio.sleep(5)
        return boots

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/api/v1/write" for p in self.ports]

    def cpu(self) -> float:
        return sum(bc._cpu_s(p.pid) for p in self.procs)

    def sys_cpu(self) -> float:
        """Kernel CPU seconds (sockets, loopback TCP, RocksDB I/O) of the workers."""
        tick = os.sysconf("SC_CLK_TCK")
        return sum(int(Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[12])
                   for p in self.procs) / tick

    def rss(self) -> int:
        return sum(rss_kib(p.pid) for p in self.procs)

    def state(self) -> dict[str, float]:
        """The workers' checkpoint counters (``/status`` health.state), summed."""
        out = {"cpu_seconds": 0.0, "samples_saved": 0.0, "bytes": 0.0, "records": 0.0,
               "series": 0.0, "changed": 0.0, "largest": 0.0, "label_bytes": 0.0}
        for port in self.ports:
            st = bc.status(port)["health"].get("state", {})
            out["cpu_seconds"] += st.get("cpu_seconds", 0.0)
            out["samples_saved"] += st.get("samples_saved", 0)
            out["label_bytes"] += st.get("label_bytes", 0)
            for table in ("baselines", "forecasts"):
                t = st.get(table, {})
                for k in ("bytes", "records", "series", "changed"):
                    out[k] += t.get(k, 0)
                out["largest"] = max(out["largest"], t.get("largest", 0))
        return out

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except Exception:  # noqa: BLE001
                os.killpg(p.pid, signal.SIGKILL)


def state_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Checkpoint cost per sample saved between two :meth:`Run.state` readings."""
    n = max(b["samples_saved"] - a["samples_saved"], 1.0)
    return {"samples_saved": n, "cpu_seconds": b["cpu_seconds"] - a["cpu_seconds"],
            "checkpoint_cpu_us_per_sample": (b["cpu_seconds"] - a["cpu_seconds"]) / n * 1e6,
            "changelog_bytes_per_sample": (b["bytes"] - a["bytes"]) / n,
            "label_bytes_per_sample": (b["label_bytes"] - a["label_bytes"]) / n,
            "records_per_1k_samples": (b["records"] - a["records"]) / n * 1000,
            "series_written_per_sample": (b["series"] - a["series"]) / n,
            "write_amplification": (b["series"] - a["series"]) / max(b["changed"] - a["changed"], 1),
            "largest_record": b["largest"]}


def worker_parts(res: dict[str, Any], bd: dict[str, float]) -> dict[str, float]:
    """The worker's CPU µs per sample split into the in-process parts (``bd``), its
    checkpoints and the rest. Every part is per sample the worker took in the timed
    rounds: the checkpoints' CPU over those rounds divided by them (not by the samples
    the checkpoints saved, which a deferred checkpoint makes far fewer)."""
    parts = {"receive": bd["receive"], "decode": bd["decode"], "model": bd["detector"],
             "early warning": bd["early_warning"],
             "rca window rollup + feed": bd.get("rca_window_rollup", 0.0)
             + bd["rca_window_feed"],
             "checkpoint (in the worker)": res["checkpoints"]["cpu_seconds"]
             / max(res["samples"], 1) * 1e6}
    parts["framework and the rest"] = res["cpu_us_per_sample"] - sum(parts.values())
    return parts


def start_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (the dev extra) sampling ``pid`` 100 times a second, without pausing it,
    into ``out`` (raw: one ``frame;frame;... count`` line per stack)."""
    exe = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "--pid", str(pid),
                             "--rate", "100", "--nonblocking", "--format", "raw",
                             "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def spy_summary(raw: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Shares of the worker's main-thread samples (the event loop: every stage, aiohttp,
    Faust; Faust's consumer thread apart): by function itself and including callees,
    the loop's own frames and waiting in ``select`` left out of the second."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "_run_module_as_main" not in frames[0]:
            continue
        count = int(n)
        total += count
        names = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f
                 for f in frames]
        own[names[-1]] = own.get(names[-1], 0) + count
        for f in set(names):
            incl[f] = incl.get(f, 0) + count
    skip = ("asyncio/", "<frozen", "mode/", "sre_agent/cli.py", "sre_agent/__main__.py")

    def rank(d: dict[str, int], drop: tuple[str, ...]) -> list[tuple[str, float]]:
        rows = sorted(d.items(), key=lambda kv: -kv[1])
        return [(k, round(100 * v / max(total, 1), 1)) for k, v in rows
                if not any(x in k for x in drop)][:top]

    return {"samples": [("main thread", float(total))], "self": rank(own, ()),
            "inclusive": rank(incl, skip)}


async def throughput(run: Run, load: Load, rounds: int, connections: int, shards: int,
                     warmup: int = 0, spy: Path | None = None
                     ) -> tuple[dict[str, Any], list[bytes], list[bytes]]:
    """Post ``warmup`` rounds (new series: timed apart) and wait until the worker
    learned them, then ``rounds`` rounds; the last spikes one series per shard; wait
    for them. ``spy``: py-spy records the first worker over the timed rounds there."""
    warm_bodies: list[bytes] = []
    new_series: dict[str, float] = {}
    if warmup:
        for _ in range(warmup):
            warm_bodies += load.bodies()[0]
        want = sum(bc.status(p)["samples_in"] for p in run.ports) + warmup * len(load.labels)
        c0, w0 = run.cpu(), time.monotonic()
        await post_all(run.urls, warm_bodies, connections)
        while (sum(bc.status(p)["samples_in"] for p in run.ports) < want
               and time.monotonic() - w0 < 600):
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # its checkpoints, the RCA feed
        new_series = {"rounds": warmup, "seconds": time.monotonic() - w0,
                      "cpu_us_per_new_series": (run.cpu() - c0) / len(load.labels) * 1e6}
    per_shard: dict[int, int] = {}
    for j, s in enumerate(load.shard):
        per_shard.setdefault(s, j)
    bodies: list[bytes] = []
    for r in range(rounds):
        spikes = ({j: SPIKE + 0.001 * k for k, j in enumerate(per_shard.values())}
                  if r == rounds - 1 else None)
        b, _ = load.bodies(spikes)
        bodies += b
    ends = {(load.sids[j], round(SPIKE + 0.001 * k, 3)) for k, j in enumerate(per_shard.values())}
    total = rounds * len(load.labels)
    seen: dict[tuple[str, float], float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(run.broker.bootstrap, run.prefix + "anomalies", seen, stop))
    st0 = run.state()
    recorder = start_spy(run.procs[0].pid, spy) if spy else None
    cpu0, sys0, t0 = run.cpu(), run.sys_cpu(), time.time()
    posted = await post_all(run.urls, bodies, connections)
    deadline = time.monotonic() + 600
    while not ends <= seen.keys() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    cpu, sys_cpu = run.cpu() - cpu0, run.sys_cpu() - sys0
    if recorder is not None:
        recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        await asyncio.to_thread(recorder.wait, 120)
    ckpt = state_delta(st0, run.state())
    stop.set()
    await watcher
    if not ends <= seen.keys():
        raise SystemExit(f"end markers missing: {len(ends - seen.keys())} of {len(ends)}")
    dt = max(seen[k] for k in ends) - t0
    return {"samples": total, "seconds": dt, "samples_per_s": total / dt,
            "cpu_seconds": cpu, "cpu_share": cpu / dt, "cpu_us_per_sample": cpu / total * 1e6,
            "sys_share_of_cpu": sys_cpu / cpu if cpu else 0.0,
            "checkpoints": ckpt, "warmup": new_series, **posted}, bodies, warm_bodies


async def latency(run: Run, load: Load, rate: float, seconds: float, per_request: int,
                  connections: int) -> dict[str, Any]:
    """Paced posting at ``rate`` with a marker spike every 0.2 s."""
    per_round = len(load.labels)
    n_rounds = max(1, int(rate * seconds / per_round))
    reqs_per_round = -(-per_round // per_request)
    total_reqs = n_rounds * reqs_per_round
    every = max(1, int(0.2 * rate / per_request))  # a marker every ~0.2 s
    candidates = list(range(len(load.labels)))
    random.Random(3).shuffle(candidates)
    rounds, markers = [], {}
    req_index = 0
    for _ in range(n_rounds):
        spikes: dict[int, float] = {}
        for q in range(reqs_per_round):
            i = req_index + q
            if i % every == 0 and candidates:
                # a series inside request q of this round
                lo, hi = q * per_request, min(per_round, (q + 1) * per_request)
                j = next((c for c in candidates if lo <= c < hi), None)
                if j is not None:
                    candidates.remove(j)
                    v = round(SPIKE + 0.001 * len(markers), 3)
                    spikes[j] = v
                    markers[i] = (load.sids[j], v)
        b, _ = load.bodies(spikes)
        rounds.append(b)
        req_index += reqs_per_round
    seen: dict[tuple[str, float], float] = {}
    in_metrics: dict[tuple[str, float], float] = {}
    keyed = {(series_key(sid), v): sid for sid, v in markers.values()}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(run.broker.bootstrap, run.prefix + "anomalies", seen, stop))
    mwatcher = asyncio.create_task(watch_metrics(run.broker.bootstrap, run.prefix + "metrics",
                                                 keyed, in_metrics, stop))
    await asyncio.sleep(1)
    sent = await paced_post(run.urls, rounds, rate, per_request, connections)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(m in seen for m in markers.values()):
        await asyncio.sleep(0.2)
    stop.set()
    await watcher
    await mwatcher
    lat = [seen[m] - sent[i] for i, m in markers.items() if m in seen]
    # where it accrues: post -> the metrics message that carried the marker (receiver,
    # coalescer linger, produce), then that message -> the anomaly (consumer, detector)
    recv = [in_metrics[(series_key(m[0]), m[1])] - sent[i] for i, m in markers.items()
            if (series_key(m[0]), m[1]) in in_metrics]
    cons = [seen[m] - in_metrics[(series_key(m[0]), m[1])] for m in markers.values()
            if m in seen and (series_key(m[0]), m[1]) in in_metrics]
    return {"rate": rate, "requests": total_reqs, "markers": len(markers), "found": len(lat),
            "p50_s": bc.pct(lat, 0.5), "p99_s": bc.pct(lat, 0.99),
            "max_s": max(lat, default=float("nan")),
            "receive_p50_s": bc.pct(recv, 0.5), "receive_p99_s": bc.pct(recv, 0.99),
            "consume_p50_s": bc.pct(cons, 0.5), "consume_p99_s": bc.pct(cons, 0.99)}


async def interval_ab(broker: Any, work: Path, a: argparse.Namespace, extra: dict[str, str],
                      runs: list[Run]) -> dict[str, Any]:
    """The production shape for checkpoints: every series once per ``--ab-scrape``
    seconds, spread evenly over it (Prometheus scrapes its targets at offsets over the
    interval), posted at the same moments to workers side by side that differ only in
    ``worker.checkpoint_interval``."""
    intervals = [float(x) for x in a.ab_intervals.split(",")]
    envs: list[dict[str, str]] = [{} for _ in intervals]
    if a.ab_env:  # two arms at the first interval: as they are, and with these settings
        intervals = [intervals[0]] * 2
        envs = [{}, dict(kv.split("=", 1) for kv in a.ab_env.split(";"))]
    arms = []
    for i, (iv, env) in enumerate(zip(intervals, envs, strict=True)):
        r = Run(broker, work, f"ck{i}", a.partitions,
                {**extra, "SRE_AGENT_WORKER__CHECKPOINT_INTERVAL": str(iv), **env})
        runs.append(r)
        await r.start(1)
        arms.append(r)
    load = Load(a.ab_series, a.per_request, a.shards, step_ms=int(a.ab_scrape * 1000))
    for _ in range(2):  # warm-up: series defined and learned, first checkpoints
        bodies, _ = load.bodies()
        await asyncio.gather(*(post_all(r.urls, bodies, a.connections) for r in arms))
    st0, cpu0 = [r.state() for r in arms], [r.cpu() for r in arms]
    posted = 0
    for _ in range(max(1, int(a.ab_seconds / a.ab_scrape))):
        bodies, _ = load.bodies()
        gap = a.ab_scrape / len(bodies)
        for body in bodies:
            t = time.monotonic()
            await asyncio.gather(*(post_all(r.urls, [body], 1) for r in arms))
            await asyncio.sleep(max(0.0, gap - (time.monotonic() - t)))
        posted += len(load.labels)
    out: dict[str, Any] = {"series": a.ab_series, "scrape_s": a.ab_scrape, "samples": posted}
    for i, (iv, r, s0, c0) in enumerate(zip(intervals, arms, st0, cpu0, strict=True)):
        d = state_delta(s0, r.state())
        name = f"interval_{iv:g}" + (f" arm {i} {envs[i]}" if a.ab_env else "")
        out[name] = {"cpu_us_per_sample": (r.cpu() - c0) / posted * 1e6, "rss_kib": r.rss(), **d}
        r.stop()
    return out


def _read_report(path: Path, newer_than: float, timeout: float = 30.0,
                 types: bool = False) -> dict[str, Any]:
    """The worker's memory report (``streams/memory_report.py``) written after a moment."""
    Path(str(path) + ".want").write_text("types" if types else "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rep = json.loads(path.read_text())
            if rep["time"] > newer_than:
                return rep
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    return {}


def _flat(rep: dict[str, Any]) -> dict[str, float]:
    """Report -> named byte counts (for deltas)."""
    out: dict[str, float] = {}
    sm = rep.get("smaps", {})
    for k in ("Rss", "Anonymous", "Rss_File" if "Rss_File" in sm else "Shared_Clean"):
        out[f"kernel {k}"] = sm.get(k, 0)
    for k, v in rep.get("malloc", {}).items():
        out[f"malloc {k}"] = v
    for k in ("memtables", "block_cache", "table_readers"):
        out[f"rocksdb {k}"] = sum(t[k] for t in rep.get("rocksdb", {}).values())
    for k, v in rep.get("rocksdb_shared", {}).items():  # counted once, not per database
        out[f"rocksdb {k}"] = v
    if "python" in rep:
        out["python traced"] = rep["python"]["traced"]
    return out


async def memory_one(broker: Any, work: Path, a: argparse.Namespace, extra: dict[str, str],
                     runs: list[Run], name: str) -> dict[str, Any]:
    """RSS above the empty worker at ``--memory-series`` series, until every sample of
    ``--memory-rounds`` rounds is checkpointed; with the worker's memory report (RocksDB,
    glibc malloc, kernel; Python with ``PYTHONTRACEMALLOC`` in the arm's settings)."""
    report = work / f"{name}-memory.json"
    mrun = Run(broker, work, name, a.partitions,
               {**extra, "SRE_AGENT_COLLECTORS__SHARDS": str(a.memory_shards),
                "SRE_DEBUG_MEMORY_REPORT": str(report)})
    runs.append(mrun)
    await mrun.start(1)
    await asyncio.sleep(2)
    empty = mrun.rss()
    rep0 = await asyncio.to_thread(_read_report, report, time.time(), 60.0)
    mload = Load(a.memory_series, a.per_request, a.memory_shards)
    t0 = time.monotonic()
    for _ in range(a.memory_rounds):
        b, _ = mload.bodies()
        await post_all(mrun.urls, b, a.connections)
    want = a.memory_rounds * a.memory_series
    deadline = time.monotonic() + 600

    def polled(read: Any, default: float) -> float:  # a busy worker may answer late
        try:
            return read()
        except OSError:
            return default

    while (polled(lambda: bc.status(mrun.ports[0])["samples_in"], 0) < want
           and time.monotonic() < deadline):
        await asyncio.sleep(1)
    # a quiet partition saves with its next event: more rounds until every
    # sample of the first ones is in a checkpoint (the state tables filled)
    extra_rounds = 0
    while (polled(lambda: mrun.state()["samples_saved"], 0) < want
           and time.monotonic() < deadline):
        b, _ = mload.bodies()
        await post_all(mrun.urls, b, a.connections)
        extra_rounds += 1
        await asyncio.sleep(a.checkpoint_wait)
    after = mrun.rss()
    rep1 = await asyncio.to_thread(_read_report, report, time.time(), 300.0, True) \
        if rep0 else {}
    # at `after` the last checkpoint's records may still wait in the producer (state
    # leaves; a series-labels record per new series): RSS again once they are sent
    rep2, t1 = rep1, time.monotonic()
    while rep2 and time.monotonic() - t1 < 180:
        p = rep2.get("producer") or {}
        if not p.get("faust_pending") and not p.get("aiokafka_batches"):
            break
        await asyncio.sleep(2)
        rep2 = await asyncio.to_thread(_read_report, report, time.time(), 60.0)
    settled = mrun.rss()
    f0, f1 = _flat(rep0), _flat(rep1)
    res = {"series": a.memory_series, "empty_kib": empty, "after_kib": after,
           "settled_kib": settled, "settled_after_s": time.monotonic() - t1,
           "settled_per_series_bytes": (settled - empty) * 1024 / a.memory_series,
           "settled_producer": (rep2 or {}).get("producer"),
           "rounds": a.memory_rounds + extra_rounds, "seconds": time.monotonic() - t0,
           "state": mrun.state(), "env": {k: v for k, v in extra.items()},
           "per_series_bytes": (after - empty) * 1024 / a.memory_series,
           "report_empty": rep0, "report_after": rep1,
           "parts_per_series": {k: (f1.get(k, 0) - f0.get(k, 0)) / a.memory_series
                                for k in f1}}
    mrun.stop()
    print(f"memory [{name}], {a.memory_series:,} series: {empty / 1024:.0f} -> "
          f"{after / 1024:.0f} MiB ({res['per_series_bytes']:,.0f} B/series)", flush=True)
    print(f"  settled (producer backlog sent, {res['settled_after_s']:.0f} s later): "
          f"{settled / 1024:.0f} MiB ({res['settled_per_series_bytes']:,.0f} B/series); "
          f"producer then {res['settled_producer']}", flush=True)
    print("  above empty, B/series: " + ", ".join(
        f"{k} {v:,.0f}" for k, v in res["parts_per_series"].items()), flush=True)
    if rep1.get("producer"):
        print(f"  producer backlog: {rep1['producer']}", flush=True)
    for name, count, size in rep1.get("gc_types", [])[:12]:
        print(f"    {count:>9,} {size / a.memory_series:6,.0f} B/series (shallow) {name}",
              flush=True)
    if "python" in rep1:
        for line, size, count in rep1["python"].get("grown", rep1["python"]["top"])[:25]:
            print(f"    {size / a.memory_series:8,.0f} B/series {count:>9,} {line}", flush=True)
    shared = "rocksdb_shared" in rep1  # one cache for every table: not per table
    for t, row in sorted(rep1.get("rocksdb", {}).items()):
        if row["memtables"] + (0 if shared else row["block_cache"]) > 1 << 20:
            print(f"    rocksdb {t}: memtables {row['memtables']:,}" + (
                "" if shared else f", block cache {row['block_cache']:,}"), flush=True)
    return res


async def memory_arms(broker: Any, work: Path, a: argparse.Namespace, extra: dict[str, str],
                      runs: list[Run]) -> dict[str, Any]:
    """The memory part; with ``--memory-env`` arms side by side (A, B, A, B...)."""
    arms = [("A", extra)]
    for i, spec in enumerate(a.memory_env):
        env = dict(kv.split("=", 1) for kv in spec.split(";") if kv)
        arms.append((chr(ord("B") + i), {**extra, **env}))
    out: dict[str, Any] = {}
    for rep in range(a.memory_repeat):
        for label, env in arms:
            name = f"mem{label}{rep}"
            out[name] = await memory_one(broker, work, a, env, runs, name)
    if len(out) == 1:
        return next(iter(out.values()))
    print("memory arms, B/series (settled): " + "; ".join(
        f"{k} {v['per_series_bytes']:,.0f} ({v['settled_per_series_bytes']:,.0f}) ({v['env']})"
        for k, v in out.items()), flush=True)
    return out


async def scale_out(broker: Any, work: Path, a: argparse.Namespace, extra: dict[str, str],
                    runs: list[Run]) -> dict[str, Any]:
    """One worker, then two in one group, fresh topics each, the same load posted."""
    rates = {}
    for n in (1, 2):
        srun = Run(broker, work, f"scale{n}", a.partitions, extra)
        runs.append(srun)
        await srun.start(n)
        sload = Load(a.series, a.per_request, a.shards)
        r, _, _ = await throughput(srun, sload, a.rounds, a.connections, a.shards,
                                   a.warmup_rounds)
        rates[n] = r
        srun.stop()
        print(f"{n} worker(s): {r['samples_per_s']:,.0f} samples/s, "
              f"{r['cpu_us_per_sample']:.1f} µs CPU/sample", flush=True)
    scale = {"one": rates[1], "two": rates[2],
             "ratio": rates[2]["samples_per_s"] / rates[1]["samples_per_s"],
             "cpu_per_sample_ratio": rates[2]["cpu_us_per_sample"]
             / rates[1]["cpu_us_per_sample"]}
    print(f"scale-out two/one: {scale['ratio']:.2f}x "
          f"(CPU per sample {scale['cpu_per_sample_ratio']:.2f}x)", flush=True)
    return scale


# ====================================================================== main
async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    from sre_agent.devstack import KafkaBroker, default_cache_dir

    work = Path(tempfile.mkdtemp(prefix="sre-ingest-"))
    broker = KafkaBroker(work / "kafka", default_cache_dir(), heap="1g")
    await asyncio.to_thread(broker.start)
    extra = dict(kv.split("=", 1) for kv in a.env)
    runs: list[Run] = []  # stopped in the end, whatever happens
    out: dict[str, Any] = {"series": a.series, "per_request": a.per_request,
                           "rounds": a.rounds, "partitions": a.partitions, "env": extra}
    try:
        if a.ab_only:
            out["checkpoint_interval_ab"] = ab = await interval_ab(broker, work, a, extra, runs)
            print(json.dumps(ab, indent=1, default=str), flush=True)
            return out
        if a.scale_only:
            out["scale"] = await scale_out(broker, work, a, extra, runs)
            return out
        if a.memory_only:
            out["memory"] = await memory_arms(broker, work, a, extra, runs)
            return out
        # ---- 1. one worker at full speed
        run = Run(broker, work, "one", a.partitions, extra)
        runs.append(run)
        await run.start(1, a.profile)
        await asyncio.sleep(2)
        rss_empty = run.rss()
        load = Load(a.series, a.per_request, a.shards)
        print(f"posting {a.rounds} rounds x {a.series} series ...", flush=True)
        res, bodies, warm_bodies = await throughput(run, load, a.rounds, a.connections,
                                                    a.shards, a.warmup_rounds, a.py_spy)
        out["worker"] = res
        if a.py_spy:
            prof = out["py_spy"] = spy_summary(a.py_spy)
            print("py-spy, % of the worker's main-thread samples over the timed rounds "
                  f"({prof['samples'][0][1]:.0f} samples):", flush=True)
            for kind in ("self", "inclusive"):
                print(f"  {kind}: " + "; ".join(f"{k} {v}%" for k, v in prof[kind][:20]),
                      flush=True)
        if res["warmup"]:
            print(f"warm-up ({a.warmup_rounds} round, untimed below): "
                  f"{res['warmup']['cpu_us_per_new_series']:.0f} µs CPU per new series "
                  f"(its first sample included)", flush=True)
        print(f"worker: {res['samples_per_s']:,.0f} samples/s, "
              f"{res['cpu_us_per_sample']:.1f} µs CPU/sample, "
              f"{res['cpu_share']:.2f} of a core ({100 * res['sys_share_of_cpu']:.0f}% in the "
              f"kernel), {res['retries']} busy answers", flush=True)
        ck = res["checkpoints"]
        print(f"checkpoints: {ck['checkpoint_cpu_us_per_sample']:.2f} µs CPU/sample saved "
              f"({ck['cpu_seconds'] / max(res['samples'], 1) * 1e6:.2f} per sample taken), "
              f"{ck['changelog_bytes_per_sample']:.0f} B of state changelog/sample "
              f"(+{ck['label_bytes_per_sample']:.0f} B labels), write amplification "
              f"{ck['write_amplification']:.2f}, largest record {ck['largest_record']:,.0f} B",
              flush=True)
        st = bc.status(run.ports[0])
        out["receiver"] = st["health"].get("collector.remote_write", {}).get("coalescer")
        # ---- 2. ceiling on the messages the worker produced
        cl = await ceiling(broker.bootstrap, run.prefix + "metrics", res["samples"],
                           skip=a.warmup_rounds * a.series)
        values, warm = cl.pop("_values"), cl.pop("_warm")
        out["ceiling"] = cl
        out["cpu_ratio"] = res["cpu_us_per_sample"] / cl["cpu_us_per_sample"]
        print(f"ceiling: {cl['samples_per_s']:,.0f} samples/s, {cl['cpu_us_per_sample']:.2f} µs "
              f"CPU/sample ({cl['series_per_message']:.0f} series/message, "
              f"{cl['bytes_per_sample']:.0f} B/sample); worker/ceiling CPU per sample "
              f"{out['cpu_ratio']:.1f}x", flush=True)
        # ---- 3. breakdown
        bd = out["breakdown_us_per_sample"] = await breakdown(bodies, values, a.shards, warm_bodies, warm,
                                                             a.rounds, a.partitions)
        parts = out["worker_cpu_us_per_sample_parts"] = worker_parts(res, bd)
        print("in-process µs/sample: " + ", ".join(f"{k} {v:.2f}" for k, v in bd.items()),
              flush=True)
        print("worker µs/sample: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()),
              flush=True)
        if a.profile:
            run.stop()
            bc._print_profile(a.profile, 45)
            return out
        # ---- 4. latency at half rate
        out["latency"] = await latency(run, load, res["samples_per_s"] / 2, a.latency_seconds,
                                       a.per_request, a.connections)
        lt = out["latency"]
        print(f"latency at {lt['rate']:,.0f} samples/s: p50 {lt['p50_s']:.3f} s, "
              f"p99 {lt['p99_s']:.3f} s ({lt['found']}/{lt['markers']} markers); post -> "
              f"metrics message p50 {lt['receive_p50_s']:.3f} / p99 {lt['receive_p99_s']:.3f} s, "
              f"metrics message -> anomaly p50 {lt['consume_p50_s']:.3f} / p99 "
              f"{lt['consume_p99_s']:.3f} s", flush=True)
        await asyncio.sleep(2)
        out["rss"] = {"empty_kib": rss_empty, "after_kib": run.rss(),
                      "per_series_bytes": (run.rss() - rss_empty) * 1024 / a.series}
        run.stop()
        print(f"RSS: {rss_empty / 1024:.0f} MiB empty -> {out['rss']['after_kib'] / 1024:.0f} MiB"
              f" ({out['rss']['per_series_bytes']:,.0f} B/series)", flush=True)
        # ---- 5. memory at --memory-series
        if not a.skip_memory:
            out["memory"] = await memory_arms(broker, work, a, extra, runs)
        # ---- 6. checkpoint interval in the production shape
        if a.ab_intervals:
            ab = out["checkpoint_interval_ab"] = await interval_ab(broker, work, a, extra, runs)
            for k, v in ab.items():
                if k.startswith("interval_"):
                    print(f"{k[9:]} s checkpoints, {a.ab_series:,} series scraped every "
                          f"{a.ab_scrape:g} s: worker {v['cpu_us_per_sample']:.1f} µs CPU/sample, "
                          f"checkpoints {v['checkpoint_cpu_us_per_sample']:.2f} µs/sample, "
                          f"{v['changelog_bytes_per_sample']:.0f} B changelog/sample, write "
                          f"amplification {v['write_amplification']:.2f}, "
                          f"RSS {v['rss_kib'] / 1024:.0f} MiB", flush=True)
        # ---- 7. scale-out: one worker vs two, fresh topics each
        if not a.skip_scale:
            out["scale"] = await scale_out(broker, work, a, extra, runs)
        out["bench_client_cpu_s"] = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        return out
    finally:
        for r in runs:
            r.stop()
        await asyncio.to_thread(broker.stop, True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--per-request", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--warmup-rounds", type=int, default=1,
                   help="rounds posted first and timed apart (new series), 0: none")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--shards", type=int, default=64)
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--memory-series", type=int, default=100_000)
    p.add_argument("--memory-rounds", type=int, default=3)
    p.add_argument("--memory-shards", type=int, default=64)
    p.add_argument("--memory-only", action="store_true", help="only the memory part (5)")
    p.add_argument("--memory-env", action="append", default=[], metavar="'K=V;K=V'",
                   help="another memory arm with these worker settings (repeatable); the "
                        "arms run one after the other, --memory-repeat times")
    p.add_argument("--memory-repeat", type=int, default=1)
    p.add_argument("--profile", type=Path, help="cProfile the first worker, print, stop")
    p.add_argument("--py-spy", type=Path, metavar="RAW",
                   help="py-spy (dev extra) samples the first worker over the timed rounds "
                        "into RAW; the top entries are printed")
    p.add_argument("--checkpoint-wait", type=float, default=8.0)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--ab-intervals", default="5,60",
                   help="checkpoint intervals compared side by side in the production shape "
                        "('' to skip)")
    p.add_argument("--ab-env", default="",
                   help="instead of intervals: two workers side by side at the first interval, "
                        "the second with these settings ('K=V;K=V')")
    p.add_argument("--ab-series", type=int, default=20_000)
    p.add_argument("--ab-scrape", type=float, default=15.0, help="seconds between a series' samples")
    p.add_argument("--ab-seconds", type=float, default=240.0)
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--ab-only", action="store_true", help="only the side-by-side A/B")
    p.add_argument("--scale-only", action="store_true", help="only the scale-out (one vs two)")
    p.add_argument("--env", action="append", default=[],
                   help="extra worker setting, e.g. SRE_AGENT_WORKER__FETCH_MAX_WAIT_MS=1500")
    p.add_argument("--json", type=Path)
    p.add_argument("--inprocess-memory", type=int, metavar="SERIES",
                   help="only: RSS per series of the per-series structures, in-process")
    a = p.parse_args(argv)
    settings = load_settings(env=dict(kv.split("=", 1) for kv in a.env))
    # the last round's spikes end the timing: a series must be past the detector's
    # warm-up by then, or the bench waits for anomalies that never come
    need = settings.anomaly_detection.warmup_samples + 2 - a.warmup_rounds
    if not (a.inprocess_memory or a.memory_only or a.ab_only) and a.rounds < need:
        p.error(f"--rounds {a.rounds}: the marker spikes need at least {need} rounds "
                f"(anomaly_detection.warmup_samples "
                f"{settings.anomaly_detection.warmup_samples}, --warmup-rounds {a.warmup_rounds})")
    # the worker's collector settings here too: the ceiling and the in-process parts pay
    # the garbage collection the worker pays (worker.gc_threshold)
    from sre_agent.streams.consumer_tuning import tune_gc

    tune_gc(settings.worker.gc_threshold)
    if a.inprocess_memory:
        print(f"{a.inprocess_memory:,} series: "
              f"{inprocess_memory(a.inprocess_memory):,.0f} B RSS per series (in-process)")
        return 0
    out = asyncio.run(main_async(a))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
