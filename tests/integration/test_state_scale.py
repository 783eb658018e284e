"""A worker holding 100,000 series checkpoints them without a record over Kafka's limit.

Issue 18: the baselines table packed a partition's series into ``crc32 % 64`` groups,
the hash of the ``metrics`` shard too; with 64 shards a group held a 64th of *all*
series, and near 80,000 series its record passed the broker's 1 MB
``message.max.bytes``: the worker's producer failed with MessageSizeTooLargeError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import cramjam
import pytest

from sre_agent.collectors.prompb import WriteRequest

pytestmark = pytest.mark.integration

TOKEN = "state-scale-token"
SERIES = 100_000
PER_REQUEST = 2000
T0_MS = 1_763_000_000_000


def _bodies(round_: int, series: int = SERIES) -> list[bytes]:
    out = []
    for start in range(0, series, PER_REQUEST):
        req = WriteRequest()
        for j in range(start, start + PER_REQUEST):
            ts = req.timeseries.add()
            for k, v in (("__name__", "http_request_duration_ms"),
                         ("instance", f"10.{j // 65536}.{j // 256 % 256}.{j % 256}:9090"),
                         ("job", "kubernetes-pods"), ("pod", f"pod-{j}")):
                ts.labels.add(name=k, value=v)
            ts.samples.add(value=50.0 + (j + round_) % 7, timestamp=T0_MS + 15_000 * round_)
        out.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    return out


async def _post_all(url: str, bodies: list[bytes]) -> None:
    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "Authorization": f"Bearer {TOKEN}"}
    queue = list(bodies)

    async def sender(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            while True:  # 503 (buffer full): retry, as Prometheus does
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 204:
                        break
                    assert r.status == 503, (r.status, await r.text())
                await asyncio.sleep(0.2)

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(sender(session) for _ in range(4)))


async def test_a_worker_with_100k_series_checkpoints_within_the_record_limit(
    worker_factory: Callable[..., Any],
) -> None:
    # a checkpoint of 100,000 series takes the broker seconds, and the next one waits ten
    # times as long (streams/checkpoints.py): capped here so that the second round's
    # events (the last input) still save the first round
    w = worker_factory(extra_env={"SRE_AGENT_API__WEBHOOK_TOKEN": TOKEN,
                                  "SRE_AGENT_WORKER__LOG_LEVEL": "WARNING",
                                  "SRE_AGENT_WORKER__CHECKPOINT_MAX_INTERVAL": "1"})
    w.start()
    url = f"{w.url}/api/v1/write"
    for round_ in range(2):  # the second round's events save the first round's last ones
        await _post_all(url, _bodies(round_))

    def saved() -> bool:
        """The first round's samples and series are in the written state."""
        assert w.proc.poll() is None, f"worker died:\n{w.tail()}"
        state = w.status()["health"]["state"]
        return int(state["samples_saved"]) >= SERIES \
            and int(state["baselines"]["changed"]) >= SERIES

    # A quiet partition's last events are saved with its next event (no timer writes a
    # table outside the stream), and a checkpoint waits while the previous one's records
    # are unacknowledged (streams/checkpoints.py): under load the second round can come
    # in that wait. The next scrapes of a few series, as a live Prometheus sends them,
    # carry the checkpoints on
    deadline = time.monotonic() + 600
    round_ = 2
    while not saved():
        assert time.monotonic() < deadline, w.status()["health"]["state"]
        await _post_all(url, _bodies(round_, series=PER_REQUEST))
        round_ += 1
        await asyncio.sleep(3)
    state = w.status()["health"]["state"]
    base = state["baselines"]
    assert state["ok"] and base["changed"] >= SERIES, state
    assert 0 < base["largest"] <= 256 * 1024, state  # worker.state_record_bytes
    assert base["splits"] > 0, state
    assert "MessageSizeTooLarge" not in w.log.read_text(errors="replace"), w.tail()
    assert w.proc.poll() is None
