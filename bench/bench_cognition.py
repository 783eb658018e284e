"""Cognition benchmarks: model costs, and metrics -> anomalies on the real broker.

Two parts, both printed as tables (``--json FILE`` keeps everything):

``models`` (in-process, one core): update+score cost per sample of each model
we use or considered (ours, and River's stats/anomaly/time-series pieces), their
pickled state size, and where a worker's time goes per sample (decode,
detector, early warning) on the same messages the broker part sends.

``stream`` (Apache Kafka from :mod:`sre_agent.devstack` + one real
``sre-agent worker`` subprocess, both on this machine):

1. ``--series`` series (default 10,000) in ``--shards`` keyed messages, each
   series with ``--points`` samples per message, are preloaded into ``metrics``;
2. **ceiling**: a plain aiokafka consumer reads and decodes (``MetricBatch``) them;
3. **worker**: the worker consumes the same backlog (samples/s from its first
   to its last sample, scored, learned, anomalies out, state checkpointed);
4. **latency**: produced at half the worker's rate (or ``--latency-rate``) for
   ``--latency-seconds`` with a spike marker every 0.2 s; p50/p99 of produce ->
   anomaly produced (its Kafka timestamp);
5. **state**: bytes per series in the ``baselines`` table;
6. **restart**: SIGTERM, start again, one more round of every series with a
   marker spike: seconds until it is served again (marker anomaly out, judged
   against the recovered baselines).

Run::

    python bench/bench_cognition.py models
    python bench/bench_cognition.py stream --series 10000 --points 4
    python bench/bench_cognition.py all --json /tmp/cognition.json

Figures go to docs/benchmarks/cognition.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sre_agent.config import AnomalySettings, PredictionSettings, load_settings
from sre_agent.models import CalibratedTail, SeasonalDetector, SeriesBank, TailBank
from sre_agent.models.forecast import TrendForecaster
from sre_agent.models.templates import TemplateMiner
from sre_agent.processors.detect import MetricDetector, anomaly_id
from sre_agent.processors.predict import EarlyWarning
from sre_agent.schemas import MetricBatch, decode, series_id, shard_of

T0 = 1_763_000_000.0


# ====================================================================== models
def _per_sample(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6


def model_costs(n: int = 20_000) -> list[dict[str, Any]]:
    """µs per sample (learn + score) and state bytes of each model, one core."""
    from river import anomaly, stats, time_series

    rng = random.Random(1)
    xs = [100 + rng.gauss(0, 1) for _ in range(n)]
    rows: list[dict[str, Any]] = []

    def river_stat(name: str, mk: Any) -> None:
        m = mk()

        def run(k: int) -> None:
            for x in xs[:k]:
                m.update(x)
                m.get()
        rows.append({"model": f"river stats.{name}", "us": _per_sample(run, n),
                     "state_bytes": len(pickle.dumps(m)), "use": "candidate per-series stat"})

    river_stat("EWMean(0.02)", lambda: stats.EWMean(0.02))
    river_stat("EWVar(0.01)", lambda: stats.EWVar(0.01))
    river_stat("Quantile(0.5)", lambda: stats.Quantile(0.5))
    river_stat("RollingQuantile(0.99, 500)", lambda: stats.RollingQuantile(0.99, 500))

    def river_anom(name: str, m: Any, k: int, scale: bool = False) -> None:
        feats = [{"x": (x - 95) / 10 if scale else x} for x in xs[:k]]

        def run(kk: int) -> None:
            for f in feats[:kk]:
                m.score_one(f)
                m.learn_one(f)
        rows.append({"model": f"river anomaly.{name}", "us": _per_sample(run, k),
                     "state_bytes": len(pickle.dumps(m)), "use": "too heavy per series"})

    gs = anomaly.GaussianScorer()

    def gauss(k: int) -> None:
        for x in xs[:k]:
            gs.score_one(None, x)
            gs.learn_one(None, x)
    rows.append({"model": "river anomaly.GaussianScorer", "us": _per_sample(gauss, n),
                 "state_bytes": len(pickle.dumps(gs)), "use": "candidate per-series scorer"})
    river_anom("HalfSpaceTrees(25 trees)", anomaly.HalfSpaceTrees(seed=1), 3000, scale=True)

    def river_ts(name: str, m: Any, k: int) -> None:
        for x in xs[:10]:  # initialise the components
            m.learn_one(x)

        def run(kk: int) -> None:
            for x in xs[:kk]:
                m.learn_one(x)
                m.forecast(horizon=1)
        rows.append({"model": f"river time_series.{name}", "us": _per_sample(run, k),
                     "state_bytes": len(pickle.dumps(m)), "use": "per bucket (forecaster)"})

    river_ts("HoltWinters(trend)", time_series.HoltWinters(alpha=0.2, beta=0.05), n)
    river_ts("SNARIMAX(2,1,1)", time_series.SNARIMAX(p=2, d=1, q=1), 2000)

    # ours
    m = SeasonalDetector()

    def ours_one(k: int) -> None:
        for i, x in enumerate(xs[:k]):
            m.score_learn_one(T0 + 15 * i, x)
    rows.append({"model": "SeasonalDetector (1 series, River API)", "us": _per_sample(ours_one, 5000),
                 "state_bytes": len(m.to_bytes()) + 1, "use": "backtest of one file, tests"})
    ct = CalibratedTail()

    def ref_one(k: int) -> None:
        for i, x in enumerate(xs[:k]):
            ct.learn_one({"t": T0 + 15 * i, "y": x})
    rows.append({"model": "CalibratedTail (1 series, River reference)", "us": _per_sample(ref_one, 5000),
                 "state_bytes": len(pickle.dumps(ct)), "use": "reference of the tail bank, tests"})
    for width in (1, 31, 100, 1000, 10_000):
        for cls, label, use in ((SeriesBank, "SeriesBank (previous, 4 detectors)", "offline RCA"),
                                (TailBank, "TailBank (calibrated)", "the stream's hot path")):
            bank = cls(capacity=width)
            slots = np.array([bank.add() for _ in range(width)])
            vals = np.random.default_rng(1).normal(100, 1, (64, width))
            rounds = max(8, 40_000 // width)

            def run_bank(_: int, bank: Any = bank, slots: Any = slots, vals: Any = vals,
                         rounds: int = rounds, width: int = width) -> None:
                for i in range(rounds):
                    bank.step(slots, np.full(width, T0 + 15 * i), vals[i % 64])
            us = _per_sample(run_bank, rounds * width)
            rows.append({"model": f"{label}, {width} series per step", "us": us,
                         "state_bytes": cls.row_bytes(bank.row(0)).__len__() + 1, "use": use})
    f = TrendForecaster()

    def fc(k: int) -> None:
        for i, x in enumerate(xs[:k]):
            f.learn_one(T0 + 15 * i, x)
        f.time_to(200.0, 6 * 3600)
    rows.append({"model": "TrendForecaster (5-min buckets, River Holt)", "us": _per_sample(fc, n),
                 "state_bytes": len(f.to_bytes()), "use": "saturation series only"})
    miner = TemplateMiner()
    lines = [f"GET /api/orders/{i} took {rng.randint(1, 900)}ms from 10.0.{i % 255}.{i % 7} "
             f"status={rng.choice([200, 200, 500])}" for i in range(n)]

    def mine(k: int) -> None:
        for ln in lines[:k]:
            miner.add(ln)
    rows.append({"model": "TemplateMiner.add (Drain, per log line)", "us": _per_sample(mine, n),
                 "state_bytes": len(miner.to_bytes()), "use": "per service"})
    return rows


def worker_profile(msgs: list[bytes]) -> dict[str, float]:
    """In-process µs per sample of each step the worker does on these messages."""
    det = MetricDetector(AnomalySettings())
    ew = EarlyWarning(PredictionSettings())
    for m in msgs[: len(msgs) // 3]:  # create the series first (the stream's first round)
        b = decode(MetricBatch, m)
        det.update(b)
        ew.update(b)
    rest = msgs[len(msgs) // 3:]
    t_dec = t_det = t_ew = 0.0
    samples = 0
    for m in rest:
        a = time.perf_counter()
        b = decode(MetricBatch, m)
        c = time.perf_counter()
        det.update(b)
        d = time.perf_counter()
        ew.update(b)
        e = time.perf_counter()
        t_dec, t_det, t_ew = t_dec + c - a, t_det + d - c, t_ew + e - d
        samples += b.sample_count()
    t0 = time.perf_counter()
    dirty = det.take_dirty()
    t_ck = time.perf_counter() - t0
    return {"decode_us": t_dec / samples * 1e6, "detect_us": t_det / samples * 1e6,
            "early_warning_us": t_ew / samples * 1e6,
            "checkpoint_serialise_us_per_series": t_ck / max(len(dirty), 1) * 1e6,
            "in_process_samples_per_s": samples / (t_dec + t_det + t_ew)}


# ====================================================================== stream
class Load:
    """``series`` series in shards; ``tick()`` gives one message per shard."""

    def __init__(self, series: int, shards: int, points: int, step: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.points, self.step, self.t = points, step, T0
        self.by_shard: dict[int, list[tuple[str, dict[str, str], str]]] = {}
        for j in range(series):
            name = "memory_limit_ratio" if j % 10 == 0 else "http_latency_ms"
            labels = {"service": f"svc{j % 200}", "pod": f"pod-{j}", "namespace": "prod"}
            sid = series_id(name, labels)
            self.by_shard.setdefault(shard_of(sid, shards), []).append((name, labels, sid))
        self.sids = [sid for ser in self.by_shard.values() for _, _, sid in ser]

    def tick(self, marker: str | set[str] | None = None) -> tuple[list[tuple[bytes, bytes]], int, float]:
        """Messages (key, value), samples, and the marker's sample time."""
        marks = {marker} if isinstance(marker, str) else (marker or set())
        out = []
        n = 0
        ts = [self.t + self.step * (k + 1) for k in range(self.points)]
        self.t = ts[-1]
        for shard, series in self.by_shard.items():
            rows = []
            for name, labels, sid in series:
                if name == "memory_limit_ratio":
                    pts = [[t, 0.5 + 0.001 * self.rng.random()] for t in ts]
                else:
                    pts = [[t, 50.0 + self.rng.gauss(0.0, 1.0)] for t in ts]
                if sid in marks:
                    pts[-1][1] = 500.0 if name != "memory_limit_ratio" else 5.0
                rows.append({"name": name, "labels": labels, "points": pts})
                n += len(pts)
            out.append((str(shard).encode(),
                         orjson.dumps({"source": "bench", "shard": shard, "series": rows})))
        return out, n, ts[-1]


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return orjson.loads(r.read())  # type: ignore[no-any-return]


def worker_env(broker: Any, work: Path, prefix: str, partitions: int, port: int,
               checkpoint: float = 5.0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
    env.update({
        "SRE_AGENT_KAFKA__BROKER": broker.url, "SRE_AGENT_KAFKA__TOPIC_PREFIX": prefix,
        "SRE_AGENT_KAFKA__PARTITIONS": str(partitions),
        "SRE_AGENT_WORKER__APP_ID": "bench-" + prefix.rstrip("."),
        "SRE_AGENT_WORKER__DATA_DIR": str(work / "data"), "SRE_AGENT_WORKER__WEB_PORT": str(port),
        "SRE_AGENT_WORKER__LOG_JSON": "false",
        "SRE_AGENT_WORKER__LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
        "SRE_AGENT_ANOMALY_DETECTION__WARMUP_SAMPLES": "20",
        "SRE_AGENT_WORKER__CHECKPOINT_INTERVAL": str(checkpoint),
    })
    return env


def spawn(env: dict[str, str], work: Path, profile: Path | None = None) -> subprocess.Popen[bytes]:
    log = (work / "worker.log").open("ab")
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    return subprocess.Popen([sys.executable, *prof, "-m", "sre_agent", "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 180) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited {proc.returncode}")
        try:
            if status(port)["recovery"]["ready"]:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("worker not ready")


async def produce_all(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                            max_request_size=8 << 20, acks=1)
    await prod.start()
    t0 = time.monotonic()
    try:
        futs = [await prod.send(topic, value=v, key=k) for k, v in msgs]
        await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return time.monotonic() - t0


async def ceiling(bootstrap: str, topic: str, total: int) -> dict[str, float]:
    """A plain aiokafka consumer that reads and decodes the messages: samples/s."""
    from aiokafka import AIOKafkaConsumer

    cons = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                            auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
                            fetch_max_bytes=64 << 20)
    await cons.start()
    samples = msgs = 0
    t0 = None
    try:
        while samples < total:
            recs = await cons.getmany(timeout_ms=1000, max_records=2000)
            for batch in recs.values():
                for r in batch:
                    if t0 is None:
                        t0 = time.monotonic()
                    samples += decode(MetricBatch, r.value).sample_count()
                    msgs += 1
    finally:
        await cons.stop()
    dt = time.monotonic() - (t0 or time.monotonic())
    return {"samples_per_s": samples / dt, "messages_per_s": msgs / dt, "seconds": dt}


async def tail(bootstrap: str, topic: str, on_record: Any, stop: asyncio.Event,
               reset: str = "earliest") -> None:
    """Read ``topic`` (no group) until ``stop``: ``on_record(decoded JSON, Kafka
    timestamp in s)`` for each record."""
    from aiokafka import AIOKafkaConsumer

    cons = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                            auto_offset_reset=reset, metadata_max_age_ms=1000)
    await cons.start()
    try:
        while not stop.is_set():
            recs = await cons.getmany(timeout_ms=200)
            for batch in recs.values():
                for r in batch:
                    on_record(orjson.loads(r.value), r.timestamp / 1000.0)
    finally:
        await cons.stop()


async def watch(bootstrap: str, topic: str, seen: dict[str, float], stop: asyncio.Event) -> None:
    """Opened anomalies: id -> Kafka timestamp (s)."""
    def opened(a: dict[str, Any], ts: float) -> None:
        if a.get("status") == "open":
            seen.setdefault(a["anomaly_id"], ts)

    await tail(bootstrap, topic, opened, stop)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def stream_bench(a: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from sre_agent.devstack import KafkaBroker, default_cache_dir, free_port
    from sre_agent.streams.admin import ensure_topics

    work = Path(tempfile.mkdtemp(prefix="sre-cog-"))
    broker = KafkaBroker(work / "kafka", default_cache_dir(), heap="1g")
    print(f"work dir (worker.log kept): {work}", flush=True)
    await asyncio.to_thread(broker.start)
    proc = None
    out: dict[str, Any] = {"series": a.series, "shards": a.shards, "points": a.points,
                           "partitions": a.partitions}
    try:
        prefix = f"cog{int(time.time())}."
        port = free_port()
        env = worker_env(broker, work, prefix, a.partitions, port, a.checkpoint_interval)
        await ensure_topics(load_settings(env=env))
        topic = prefix + "metrics"
        load = Load(a.series, a.shards, a.points, a.step)
        msgs: list[tuple[bytes, bytes]] = []
        total = 0
        # the last round spikes one series per shard: their anomalies mark the end
        end_marks = {ser[0][2] for ser in load.by_shard.values()}
        end_ids: set[str] = set()
        for r in range(a.rounds):
            m, n, mt = load.tick(end_marks if r == a.rounds - 1 else None)
            msgs += m
            total += n
        end_ids = {anomaly_id(sid, mt) for sid in end_marks}
        out["messages"], out["samples"] = len(msgs), total
        out["bytes_per_sample"] = round(sum(len(v) for _, v in msgs) / total, 1)
        out["profile"] = worker_profile([v for _, v in msgs])
        print(f"preloading {len(msgs)} messages / {total} samples ...", flush=True)
        await produce_all(broker.bootstrap, topic, msgs)
        out["ceiling"] = await ceiling(broker.bootstrap, topic, total)
        print(f"ceiling: {out['ceiling']['samples_per_s']:,.0f} samples/s", flush=True)

        seen: dict[str, float] = {}
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(broker.bootstrap, prefix + "anomalies", seen, stop))
        proc = spawn(env, work, a.profile)
        boot = await asyncio.to_thread(wait_ready, proc, port)
        # start: the first sample decoded (polled while the tables are still empty);
        # end: the worker produced the last round's marker anomalies (no polling: /status
        # counts every table key, which is not free)
        while (st := status(port))["samples_in"] == 0:
            await asyncio.sleep(0.05)
        first = (time.time(), st["samples_in"])
        cpu0 = _cpu_s(proc.pid)
        deadline = time.monotonic() + 900
        while not end_ids <= seen.keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        cpu = _cpu_s(proc.pid) - cpu0
        stop.set()
        await watcher
        if not end_ids <= seen.keys():
            raise SystemExit(f"end markers missing: {len(end_ids - seen.keys())}")
        dt = max(seen[k] for k in end_ids) - first[0]
        rate = (total - first[1]) / dt
        out["worker"] = {"boot_s": round(boot, 1), "samples_per_s": rate, "seconds": dt,
                         "cpu_seconds": cpu, "cpu_share": cpu / dt,
                         "cpu_us_per_sample": cpu / (total - first[1]) * 1e6,
                         "anomalies_out": status(port)["events_out"].get("anomalies", 0)}
        out["worker_vs_ceiling"] = rate / out["ceiling"]["samples_per_s"]
        print(f"worker: {rate:,.0f} samples/s ({100 * out['worker_vs_ceiling']:.0f}% of ceiling)",
              flush=True)
        if a.profile:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
            _print_profile(a.profile)
            return out

        # ---- latency at half the worker's rate
        seen: dict[str, float] = {}
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(broker.bootstrap, prefix + "anomalies", seen, stop))
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2,
                                max_batch_size=1 << 20, max_request_size=8 << 20, acks=1)
        await prod.start()
        # a fixed rate (--latency-rate) compares trees at the same input on a shared machine
        target = a.latency_rate or rate / 2
        per_tick = a.series * a.points
        interval = per_tick / target
        markers: dict[str, float] = {}
        sent = 0
        t_end = time.monotonic() + a.latency_seconds
        nxt = time.monotonic()
        next_marker = time.monotonic()
        while time.monotonic() < t_end:
            # one tick = every shard once; markers spread over ticks (<= 1 per tick)
            marker = None
            if time.monotonic() >= next_marker:
                marker = random.choice(load.sids)
                next_marker += 0.2
            m, n, mt = load.tick(marker)
            mkey = str(shard_of(marker, a.shards)).encode() if marker else None
            for k, v in m:
                sent_at = time.time()
                await prod.send(topic, value=v, key=k)
                if k == mkey:
                    markers[anomaly_id(marker, mt)] = sent_at
            sent += n
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        await prod.flush()
        await prod.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(k in seen for k in markers):
            await asyncio.sleep(0.3)
        stop.set()
        await watcher
        lat = [seen[k] - s for k, s in markers.items() if k in seen]
        t_first = min(markers.values(), default=0.0)
        out["latency_timeline"] = [[round(s - t_first, 1), round(seen[k] - s, 3) if k in seen
                                    else None] for k, s in markers.items()]
        out["latency"] = {"target_samples_per_s": target, "markers": len(markers),
                          "found": len(lat), "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99),
                          "max_s": max(lat, default=float("nan"))}
        print(f"latency at {target:,.0f} samples/s: p99 {out['latency']['p99_s']:.3f} s "
              f"({len(lat)}/{len(markers)} markers)", flush=True)

        # ---- state
        await asyncio.sleep(a.checkpoint_wait)
        st = status(port)
        det_bytes = 1 + TailBank.row_bytes(TailBank().row(0)).__len__()
        out["state"] = {"baseline_value_bytes_per_series": det_bytes,
                        "forecast_value_bytes_per_saturation_series": len(
                            TrendForecaster().to_bytes()) + 40,
                        "table_keys": st["tables"].get("baselines", {}).get("keys"),
                        "rocksdb_dir_bytes": _du(work / "data")}
        out["state"]["rocksdb_bytes_per_series"] = out["state"]["rocksdb_dir_bytes"] / a.series
        # what the checkpoints wrote against what came in (the metrics stage's health)
        ck = st.get("health", {}).get("state", {})
        base = ck.get("baselines", {})
        out["state"]["checkpoints"] = {k: ck.get(k) for k in (
            "checkpoints", "held", "last_took", "unacked", "input_bytes", "samples_saved")}
        out["state"]["checkpoints"].update(baselines_records=base.get("records"),
                                           baselines_bytes=base.get("bytes"))
        if ck.get("input_bytes"):
            out["state"]["checkpoints"]["written_per_input_byte"] = round(
                (base.get("bytes") or 0) / ck["input_bytes"], 3)

        # ---- restart
        t_stop = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        dumps = [5.0, 15.0, 30.0, 60.0]  # where a slow stop waits (py-spy), if it is
        while proc.poll() is None:
            waited = time.monotonic() - t_stop
            if waited > 120:
                _dump_stacks(proc.pid, work / "stuck-stop.txt")
                raise SystemExit("the worker did not stop within 120 s of SIGTERM")
            if dumps and waited > dumps[0]:
                _dump_stacks(proc.pid, work / f"stop-{dumps.pop(0):.0f}s.txt")
            await asyncio.sleep(0.1)
        stop_s = time.monotonic() - t_stop
        t_spawn = time.monotonic()
        proc = spawn(env, work)
        ready = await asyncio.to_thread(wait_ready, proc, port)
        seen.clear()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(broker.bootstrap, prefix + "anomalies", seen, stop))
        marker = random.choice(load.sids)
        m, n, mt = load.tick(marker)
        before = status(port)["samples_in"]
        await produce_all(broker.bootstrap, topic, m)
        aid = anomaly_id(marker, mt)
        served = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if aid in seen:
                served = time.monotonic() - t_spawn
                break
            await asyncio.sleep(0.1)
        st = status(port)
        stop.set()
        await watcher
        out["restart"] = {"sigterm_stop_s": round(stop_s, 1), "ready_s": round(ready, 1),
                          "served_again_s": served, "samples_after_restart": st["samples_in"] - before}
        print(f"restart: ready {ready:.1f}s, marker served {served}s after spawn", flush=True)
        return out
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(broker.stop, True)


def _print_profile(path: Path, top: int = 35) -> None:
    import pstats

    print(f"\nworker profile ({path}), by own time:")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


def _dump_stacks(pid: int, path: Path) -> None:
    """py-spy's stacks of a worker that does not stop (if py-spy is installed), and
    every asyncio task's stack in its log (mode's SIGUSR1 handler)."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGUSR1)
    spy = Path(sys.executable).with_name("py-spy")
    if spy.exists():
        r = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True,
                           text=True, timeout=60)
        path.write_text(r.stdout + r.stderr)
        print(f"worker still stopping: its stacks in {path}", flush=True)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def print_models(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'model':<52} {'µs/sample':>10} {'state B':>9}  use")
    for r in rows:
        print(f"{r['model']:<52} {r['us']:>10.2f} {r['state_bytes']:>9}  {r['use']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["models", "stream", "all"])
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--points", type=int, default=4, help="samples per series per message")
    p.add_argument("--rounds", type=int, default=30, help="messages per shard preloaded")
    p.add_argument("--step", type=float, default=15.0)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--latency-rate", type=float, default=0.0,
                   help="samples/s of the latency phase (default: half the worker's rate)")
    p.add_argument("--checkpoint-wait", type=float, default=6.0)
    p.add_argument("--checkpoint-interval", type=float, default=5.0,
                   help="worker.checkpoint_interval (default: the setting's default)")
    p.add_argument("--profile", type=Path, help="run the worker under cProfile, write this file, "
                   "print the top functions and stop after the throughput part")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    out: dict[str, Any] = {}
    if a.part in ("models", "all"):
        out["models"] = model_costs()
        print_models(out["models"])
    if a.part in ("stream", "all"):
        out["stream"] = asyncio.run(stream_bench(a))
        print(json.dumps(out["stream"], indent=2, default=str))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
