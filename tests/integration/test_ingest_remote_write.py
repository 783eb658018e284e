"""The remote-write route under hostile bodies and its normal path, on a real worker.

Issue 15 item 3: a 94 KB body of 1 M empty ``TimeSeries`` produced 935,901 dead
letters, ~940k log lines and 4.4 GB RSS; a 2.9 MB body got the worker OOM-killed
at 21 GB. Now each bad request gets one error answer and at most one dead letter,
one log line, and the worker's memory stays bounded. Issue 18: samples of many
requests leave as few ``metrics`` messages (coalesced per shard), labels once per
series, and the worker learns them (refs resolved).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cramjam
import orjson
import pytest

from sre_agent.collectors.prompb import WriteRequest

pytestmark = pytest.mark.integration

TOKEN = "rw-ingest-token"


def _post(url: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
        "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _request(series: list[tuple[list[tuple[str, str]], float, int]]) -> bytes:
    req = WriteRequest()
    for labels, value, t in series:
        ts = req.timeseries.add()
        for k, v in labels:
            ts.labels.add(name=k, value=v)
        ts.samples.add(value=value, timestamp=t)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def _empty_series_bomb(size: int) -> bytes:
    """A snappy block of ``size`` bytes expanding to the most empty TimeSeries it can."""
    raw = b"\x0a\x00" * (size * 10)
    while True:
        body = bytes(cramjam.snappy.compress_raw(raw))
        if len(body) >= size:
            return body
        raw += raw


async def test_hostile_bodies_get_one_answer_one_dead_letter_and_bounded_memory(
    worker_factory: Callable[..., Any], kafka_io: Any, wait_for: Callable[..., Any],
) -> None:
    w = worker_factory(extra_env={"SRE_AGENT_API__WEBHOOK_TOKEN": TOKEN})
    prefix = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    w.start()
    url = f"{w.url}/api/v1/write"
    rss0 = _rss_kib(w.proc.pid)

    small = bytes(cramjam.snappy.compress_raw(b"\x0a\x00" * 1_000_000))  # 94 KB, 1 M series
    big = _empty_series_bomb(2_900_000)  # 2.9 MB of snappy
    assert 90_000 < len(small) < 100_000 and len(big) >= 2_900_000
    status, answer = _post(url, small)
    assert status == 413 and "too many series" in answer["error"]
    status, answer = _post(url, big)
    assert status == 413 and "too large" in answer["error"]

    # a good request with 5,000 nameless series in it: stored, one summary dead letter
    t = int(time.time() * 1000)
    mixed = _request([([("job", f"j{i}")], 1.0, t) for i in range(5000)]
                     + [([("__name__", "ingest_ok"), ("pod", f"p{i}")], float(i), t)
                        for i in range(50)])
    status, _ = _post(url, mixed)
    assert status == 204

    dlq = await kafka_io.read(prefix + "metrics.dlq", lambda m: len(m) >= 3, timeout=30)
    time.sleep(1.0)  # nothing more may come: read again
    dlq = await kafka_io.read(prefix + "metrics.dlq", lambda m: False, timeout=3)
    assert len(dlq) == 3, [d["error"][:80] for d in dlq]
    assert sum("5000 samples of 5000 series refused" in d["error"] for d in dlq) == 1
    log = w.log.read_text(errors="replace")
    assert log.count("dead letter on metrics") <= 3  # no per-series log storm
    assert _rss_kib(w.proc.pid) - rss0 < 400 * 1024  # was 4.4 GB and 21 GB

    # the 50 good samples: one message per shard touched, learned by the worker
    msgs = await kafka_io.read(prefix + "metrics",
                               lambda m: sum(len(x["series"]) + len(x["refs"]) for x in m) >= 50)
    assert sum(len(x["series"]) for x in msgs) == 50
    assert len(msgs) <= 64  # coalesced: at most one message per shard, not per series
    await wait_for(lambda: w.status()["samples_in"] >= 50, 30)

    # the same series again: labels are not re-sent (refs), and still learned
    status, _ = _post(url, _request([([("__name__", "ingest_ok"), ("pod", f"p{i}")], 1.0,
                                      t + 15_000) for i in range(50)]))
    assert status == 204
    msgs = await kafka_io.read(prefix + "metrics",
                               lambda m: sum(len(x["refs"]) for x in m) >= 50)
    assert sum(len(x["refs"]) for x in msgs) == 50
    await wait_for(lambda: w.status()["samples_in"] >= 100, 30)
    health = w.status()["health"]["collector.remote_write"]
    assert health["rejected_requests"] == 2 and health["samples"] == 100
    assert orjson.dumps(health)  # serialisable for /status
