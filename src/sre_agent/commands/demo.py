"""``sre-agent demo``: the README's main command.

Starts the real local stack (Apache Kafka + PostgreSQL), runs a worker,
replays a short fault scenario and prints what the agent found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from ..cli import SettingsFactory, command

__all__: list[str] = []


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=Path(".devstack/demo"), help="work folder")
    p.add_argument("--keep", action="store_true", help="keep the stack running until Ctrl-C")


async def _replay_spike(bootstrap: str, prefix: str) -> int:
    """A clean warm-up then a latency spike on checkout-service; returns messages sent."""
    from aiokafka import AIOKafkaProducer

    from ..schemas import MetricBatch, encode

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await prod.start()
    try:
        t0 = time.time() - 3 * 3600
        n = 0
        for i in range(720):  # 3 h of 15 s samples, accelerated
            t = t0 + 15 * i
            spike = 600 <= i < 620
            series = [
                {"name": "http_latency_p99_ms", "labels": {"service": "order-service"},
                 "points": [(t, (480.0 if spike else 42.0) + (i % 7) * 0.4)]},
                {"name": "http_latency_p99_ms", "labels": {"service": "market-data"},
                 "points": [(t, 18.0 + (i % 5) * 0.3)]},
            ]
            b = MetricBatch(source="demo", series=series)
            await prod.send(f"{prefix}metrics", key=b.key().encode(), value=encode(b))
            n += 1
        await prod.flush()
        return n
    finally:
        await prod.stop()


async def _collect(bootstrap: str, topic: str, seconds: float) -> list[dict[str, object]]:
    from aiokafka import AIOKafkaConsumer

    cons = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                            group_id=None)
    await cons.start()
    out = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            recs = await cons.getmany(timeout_ms=500)
            for batch in recs.values():
                out.extend(orjson.loads(r.value) for r in batch)
            if out and time.monotonic() > end - seconds + 5:
                break
    finally:
        await cons.stop()
    return out


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Wait until the worker answers ``/status`` with partitions assigned."""
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if orjson.loads(r.read())["broker"]["assigned"]:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"worker not ready after {timeout}s; see {log}")


@command("demo", "start the local stack, replay a fault scenario, print the findings", _args)
def _demo(args: argparse.Namespace, settings: SettingsFactory) -> int:
    from ..devstack import KafkaBroker, default_cache_dir, free_port

    work = args.dir.resolve()
    broker = KafkaBroker(work / "kafka", default_cache_dir())
    print("starting Apache Kafka (KRaft) ...", flush=True)
    broker.start()
    port = free_port()
    env = dict(os.environ, SRE_AGENT_KAFKA__BROKER=broker.url,
               SRE_AGENT_WORKER__DATA_DIR=str(work / "data"),
               SRE_AGENT_WORKER__WEB_PORT=str(port),
               SRE_AGENT_WORKER__APP_ID="sre-agent-demo",
               SRE_AGENT_WORKER__LOG_JSON="false")
    logf = (work / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "sre_agent", "worker"], env=env,
                              stdout=logf, stderr=subprocess.STDOUT)
    try:
        print(f"agent web status: http://127.0.0.1:{port}/status", flush=True)
        wait_ready(f"http://127.0.0.1:{port}/status", worker, work / "worker.log")
        sent = asyncio.run(_replay_spike(broker.bootstrap, ""))
        print(f"replayed {sent} metric batches (3 h of order-service/market-data latency)")
        found = asyncio.run(_collect(broker.bootstrap, "anomalies", 60))
        print(f"\nanomalies found: {len(found)}")
        for a in found:
            print(f"  [{a['status']:8}] {a['service']:14} {a['metric']} observed={a['observed']:.1f}"
                  f" expected={a['expected']:.1f} score={a['score']:.2f} at {a['time']}")
        print(f"\nworker log: {work / 'worker.log'}")
        if args.keep:
            print("stack running; Ctrl-C to stop", flush=True)
            worker.wait()
        return 0 if found else 1
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        broker.stop(clean=True)
