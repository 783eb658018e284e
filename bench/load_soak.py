"""Soak: a sustained metrics stream with 10,000+ series and a 10x burst, on the real stack.

Starts its own Apache Kafka broker (devstack) and one real ``sre-agent worker``
subprocess, then produces for several minutes in phases:

``warmup`` -> ``steady`` -> ``burst`` (10x the message and sample rate: the
seeds' market-move surge) -> ``recovery``.

Every ``--tick`` wall seconds each of ``--shards`` shards gets one
``MetricBatch`` with one sample of each of its series (sample time advances by
``--step`` seconds a tick; in the burst ten ticks fit in one). Marker spikes,
one every ``--marker-every`` seconds on a random series, must each come out as
exactly one ``open`` anomaly (its id is deterministic), which also gives the
stage latency: produce time of the spiking sample -> the anomaly's Kafka
timestamp (when the worker produced it) and -> when this script read it.

Measured: consumer lag and RSS of the worker over time (``/status``,
``/proc/<pid>/status``), samples produced vs. samples the worker decoded (none
lost), marker anomalies missing or doubled, p50/p99/max stage latency per
phase, the time for lag to recover after the burst.

Run (2 cores, about 11 minutes; 20,000 samples/s steady, 200,000 offered in the burst)::

    python bench/load_soak.py --series 10000 --points 10 --tick 5 --warmup 60 --steady 240 \
        --burst 30 --recovery 240 --drain 240 --json /tmp/soak.json

Figures go to docs/benchmarks/resilience.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sre_agent.devstack import KafkaBroker, default_cache_dir, free_port
from sre_agent.processors.detect import anomaly_id
from sre_agent.schemas import series_id, shard_of

T0 = 1_763_000_000.0


@dataclass
class Run:
    args: argparse.Namespace
    produced_msgs: int = 0
    produced_samples: int = 0
    #: marker anomaly id -> (phase, produce wall time)
    markers: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: marker anomaly id -> list of (kafka ts, read wall time)
    seen: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    #: marker anomaly id -> (series id, sample time)
    marker_at: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: series id -> [(sample time, status)] of every anomaly seen (to explain a missing marker)
    history: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    timeline: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "start"
    phase_marks: dict[str, float] = field(default_factory=dict)
    #: samples actually produced per phase (the producer may fall short of the target)
    phase_samples: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return orjson.loads(r.read())  # type: ignore[no-any-return]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def start_worker(broker: KafkaBroker, workdir: Path, prefix: str, partitions: int
                 ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
    env.update({
        "SRE_AGENT_KAFKA__BROKER": broker.url,
        "SRE_AGENT_KAFKA__TOPIC_PREFIX": prefix,
        "SRE_AGENT_KAFKA__PARTITIONS": str(partitions),
        "SRE_AGENT_WORKER__APP_ID": "soak-" + prefix.rstrip("."),
        "SRE_AGENT_WORKER__DATA_DIR": str(workdir / "data"),
        "SRE_AGENT_WORKER__WEB_PORT": str(port),
        "SRE_AGENT_WORKER__LOG_JSON": "false",
        "SRE_AGENT_WORKER__LOG_LEVEL": "WARNING",
        # warm after 10 samples, so markers count from the steady phase on
        "SRE_AGENT_ANOMALY_DETECTION__WARMUP_SAMPLES": "10",
    })
    log = (workdir / "worker.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "sre_agent", "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited {proc.returncode}; see {workdir / 'worker.log'}")
        try:
            if status(port)["recovery"]["ready"]:
                return proc, port
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("worker not ready in 120 s")


class Load:
    """The series, split by shard, and their next sample time."""

    def __init__(self, n: int, shards: int, step: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.step = step
        self.t = T0
        self.by_shard: dict[int, list[tuple[dict[str, str], str]]] = defaultdict(list)
        for j in range(n):
            labels = {"service": f"svc{j % 200}", "pod": f"pod-{j}", "job": "soak"}
            sid = series_id("latency_ms", labels)
            self.by_shard[shard_of(sid, shards)].append((labels, sid))

    def tick(self, step: float, marker: str | None, points: int = 1
             ) -> list[tuple[bytes, bytes, int]]:
        """``points`` samples per series spread over ``step`` seconds: (key, value,
        samples) per shard; the last sample of ``marker`` spikes (at ``self.t``)."""
        times = [self.t + step * (k + 1) / points for k in range(points)]
        self.t = times[-1]
        gauss = self.rng.gauss
        out = []
        for shard, series in self.by_shard.items():
            rows = []
            for labels, sid in series:
                pts = [[t, 50.0 + gauss(0.0, 1.0)] for t in times]
                if sid == marker:
                    pts[-1][1] = 500.0
                rows.append({"name": "latency_ms", "labels": labels, "points": pts})
            body = orjson.dumps({"source": "soak", "shard": shard, "series": rows})
            out.append((str(shard).encode(), body, len(rows) * points))
        return out


async def produce(run: Run, broker: KafkaBroker, topic: str, load: Load) -> None:
    from aiokafka import AIOKafkaProducer

    a = run.args
    prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20,
                            max_batch_size=1 << 20, max_request_size=8 << 20,
                            compression_type=None, acks=1)
    await prod.start()
    all_sids = [sid for series in load.by_shard.values() for _, sid in series]
    phases = [("warmup", a.warmup, 1), ("steady", a.steady, 1), ("burst", a.burst, a.factor),
              ("recovery", a.recovery, 1)]
    next_marker = time.monotonic() + a.warmup
    try:
        for phase, seconds, factor in phases:
            run.phase = phase
            run.phase_marks[phase] = time.monotonic()
            end = time.monotonic() + seconds
            interval = a.tick / factor
            nxt = time.monotonic()
            while time.monotonic() < end:
                marker = None
                if phase != "warmup" and time.monotonic() >= next_marker:
                    marker = load.rng.choice(all_sids)
                    next_marker += a.marker_every
                msgs = load.tick(a.step / factor, marker, a.points)
                sent_at = time.time()
                futs = [await prod.send(topic, value=v, key=k) for k, v, _ in msgs]
                await asyncio.gather(*futs)
                run.produced_msgs += len(msgs)
                run.produced_samples += sum(n for _, _, n in msgs)
                run.phase_samples[phase] += sum(n for _, _, n in msgs)
                if marker:
                    run.markers[anomaly_id(marker, load.t)] = (phase, sent_at)
                    run.marker_at[anomaly_id(marker, load.t)] = (marker, load.t)
                nxt += interval
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        run.phase = "drain"
        run.phase_marks["drain"] = time.monotonic()
    finally:
        await prod.stop()


async def watch_anomalies(run: Run, broker: KafkaBroker, topic: str, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    cons = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=None,
                            auto_offset_reset="earliest", metadata_max_age_ms=1000)
    await cons.start()
    try:
        while not stop.is_set():
            recs = await cons.getmany(timeout_ms=200)
            now = time.time()
            for batch in recs.values():
                for r in batch:
                    a = orjson.loads(r.value)
                    run.history[a["series"]].append((_ts(a["time"]), a["status"]))
                    if a.get("status") == "open" and a["anomaly_id"] in run.markers:
                        run.seen[a["anomaly_id"]].append((r.timestamp / 1000.0, now))
    finally:
        await cons.stop()


async def sample(run: Run, pid: int, port: int, stop: asyncio.Event, every: float) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        try:
            st = status(port)
            run.timeline.append({"t": round(time.monotonic() - t0, 1), "phase": run.phase,
                                 "rss_mib": round(rss_kib(pid) / 1024, 1),
                                 "lag": st["lag_total"], "samples_in": st["samples_in"],
                                 "produced": run.produced_samples})
        except OSError as exc:
            run.timeline.append({"t": round(time.monotonic() - t0, 1), "error": str(exc)})
        await asyncio.sleep(every)


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _absorbed(run: Run, aid: str) -> bool:
    """Was the marker's series already anomalous (an open anomaly not yet resolved)?"""
    sid, t = run.marker_at[aid]
    state = None
    for ts, status in sorted(run.history.get(sid, [])):
        if ts >= t:
            break
        state = status
    return state == "open"


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summarize(run: Run) -> dict[str, Any]:
    lat: dict[str, list[float]] = defaultdict(list)
    e2e: dict[str, list[float]] = defaultdict(list)
    for aid, (phase, sent) in run.markers.items():
        for kts, read in run.seen.get(aid, [])[:1]:
            lat[phase].append(kts - sent)
            e2e[phase].append(read - sent)
    unseen = [a for a in run.markers if not run.seen.get(a)]
    absorbed = [a for a in unseen if _absorbed(run, a)]
    missing = [a for a in unseen if a not in absorbed]
    doubled = [a for a, s in run.seen.items() if len(s) > 1]
    tl = [p for p in run.timeline if "lag" in p]
    burst_end = next((p["t"] for p in tl if p["phase"] == "recovery"), None)
    recovered = None
    if burst_end is not None:
        calm = max(50, int(0.01 * max((p["lag"] for p in tl), default=0)))
        recovered = next((round(p["t"] - burst_end, 1) for p in tl
                          if p["t"] >= burst_end and p["lag"] <= calm), None)
    phases = {}
    for ph in ("steady", "burst", "recovery"):
        pts = [p for p in tl if p["phase"] == ph]
        order = ["warmup", "steady", "burst", "recovery", "drain"]
        t0, t1 = run.phase_marks.get(ph), run.phase_marks.get(order[order.index(ph) + 1])
        phases[ph] = {
            "offered_samples_s": round(run.phase_samples[ph] / (t1 - t0)) if t0 and t1 else None,
            "markers": sum(1 for _, (p, _) in run.markers.items() if p == ph),
            "latency_p50_s": round(pct(lat[ph], 0.5), 3), "latency_p99_s": round(pct(lat[ph], 0.99), 3),
            "latency_max_s": round(max(lat[ph], default=float("nan")), 3),
            "e2e_p99_s": round(pct(e2e[ph], 0.99), 3),
            "lag_max": max((p["lag"] for p in pts), default=None),
            "rss_max_mib": max((p["rss_mib"] for p in pts), default=None),
        }
    last = tl[-1] if tl else {}
    return {
        "series": run.args.series, "shards": run.args.shards,
        "produced_msgs": run.produced_msgs, "produced_samples": run.produced_samples,
        "worker_samples_in": last.get("samples_in"),
        # after the drain: not yet processed if the worker never caught up, else lost
        "samples_missing": run.produced_samples - (last.get("samples_in") or 0),
        "caught_up": (last.get("samples_in") or 0) >= run.produced_samples,
        "markers": len(run.markers), "markers_missing": len(missing),
        # the series was already in an open anomaly (noise): the spike extends it, no new id
        "markers_absorbed": len(absorbed),
        "markers_doubled": len(doubled), "lag_recovered_after_burst_s": recovered,
        "rss_start_mib": tl[0]["rss_mib"] if tl else None,
        "rss_end_mib": last.get("rss_mib"), "phases": phases,
        "rate_base_samples_s": round(run.args.series * run.args.points / run.args.tick),
        "rate_burst_samples_s": round(run.args.series * run.args.points * run.args.factor
                                      / run.args.tick),
    }


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sre-soak-"))
    broker = KafkaBroker(work / "kafka", default_cache_dir(), heap="1g")
    await asyncio.to_thread(broker.start)
    proc = None
    try:
        prefix = f"soak{int(time.time())}."
        proc, port = await asyncio.to_thread(start_worker, broker, work, prefix, a.partitions)
        run = Run(a)
        load = Load(a.series, a.shards, a.step, a.seed)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(watch_anomalies(run, broker, prefix + "anomalies", stop)),
                 asyncio.create_task(sample(run, proc.pid, port, stop, a.sample_every))]
        await produce(run, broker, prefix + "metrics", load)
        # drain: wait until the worker has decoded everything and the markers are out
        end = time.monotonic() + a.drain
        while time.monotonic() < end:
            st = status(port)
            if st["samples_in"] >= run.produced_samples and all(
                    run.seen.get(m) or _absorbed(run, m) for m in run.markers):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # late duplicates would show now
        stop.set()
        await asyncio.gather(*tasks)
        out = summarize(run)
        out["timeline"] = run.timeline
        out["worker_alive"] = proc.poll() is None
        return out
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(broker.stop, True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=12_000)
    p.add_argument("--shards", type=int, default=16, help="metrics message keys")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--tick", type=float, default=5.0, help="wall seconds between scrapes")
    p.add_argument("--step", type=float, default=15.0, help="sample-time seconds per scrape")
    p.add_argument("--points", type=int, default=1,
                   help="samples per series per message (remote-write batches several)")
    p.add_argument("--factor", type=int, default=10, help="burst multiplier")
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--steady", type=float, default=120.0)
    p.add_argument("--burst", type=float, default=60.0)
    p.add_argument("--recovery", type=float, default=120.0)
    p.add_argument("--drain", type=float, default=180.0)
    p.add_argument("--marker-every", type=float, default=5.0)
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    out = asyncio.run(main_async(a))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    brief = {k: v for k, v in out.items() if k != "timeline"}
    print(json.dumps(brief, indent=2))
    print("\n  t(s)  phase     RSS MiB      lag  samples_in")
    for pnt in out["timeline"][:: max(1, len(out["timeline"]) // 40)]:
        if "lag" in pnt:
            print(f"{pnt['t']:6.0f}  {pnt['phase']:8s} {pnt['rss_mib']:8.1f} {pnt['lag']:8d}  "
                  f"{pnt['samples_in']}")
    ok = (out["worker_alive"] and out["samples_missing"] == 0 and out["markers_missing"] == 0
          and out["markers_doubled"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
