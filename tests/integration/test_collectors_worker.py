"""The collectors inside a real ``sre-agent worker`` on the real Kafka broker.

One worker is configured with all four collectors at once (to keep the run
short): the Prometheus poller against a real Prometheus that scrapes a local
exporter and ``remote_write``\\ s into the worker's receiver, the Loki poller
against the Loki stand-in, and CloudWatch against moto's server mode. The
test checks the ``metrics`` and ``logs`` topics, the health entries in
``/status`` (an unreachable Prometheus first, then its recovery), and the
receiver's answers to unauthenticated and undecodable pushes.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from sre_agent.devstack import free_port
from tests.integration.prometheus_server import Exporter, PrometheusServer
from tests.standins.loki_server import LokiStandin

pytestmark = pytest.mark.integration

TOKEN = "rw-token-123"


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _series(msgs: list[dict[str, Any]], source: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for m in msgs if m.get("source") == source for s in m["series"]}


async def test_collectors_run_in_the_worker(
    worker_factory: Callable[..., Any], kafka_io: Any, wait_for: Callable[..., Any], tmp_path: Path,
) -> None:
    exporter = Exporter().start()
    exporter.queue_depth.labels("checkout").set(7.5)
    loki = await LokiStandin().start()
    now = time.time()
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    prom: PrometheusServer | None = None
    try:
        async with get_session().create_client(
            "cloudwatch", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{moto_port}",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ) as cw:
            await cw.put_metric_data(Namespace="AWS/RDS", MetricData=[
                {"MetricName": "CPUUtilization", "Value": 55.0,
                 "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "orders-db"}],
                 "Timestamp": datetime.fromtimestamp(now - 180 + 10 * i, UTC)} for i in range(31)])

        prom_port = free_port()
        queries = [{"name": "queue_depth", "expr": "sum by (service) (demo_queue_depth)"}]
        w = worker_factory(extra_env={
            "SRE_AGENT_API__WEBHOOK_TOKEN": TOKEN,
            "SRE_AGENT_COLLECTORS__BACKOFF_MAX": "2",
            "SRE_AGENT_COLLECTORS__PROMETHEUS__ENABLED": "true",
            "SRE_AGENT_COLLECTORS__PROMETHEUS__URL": f"http://127.0.0.1:{prom_port}",
            "SRE_AGENT_COLLECTORS__PROMETHEUS__INTERVAL": "1",
            "SRE_AGENT_COLLECTORS__PROMETHEUS__TIMEOUT": "2",
            "SRE_AGENT_COLLECTORS__PROMETHEUS__QUERIES": json.dumps(queries),
            "SRE_AGENT_COLLECTORS__LOKI__ENABLED": "true",
            "SRE_AGENT_COLLECTORS__LOKI__URL": loki.url,
            "SRE_AGENT_COLLECTORS__LOKI__INTERVAL": "1",
            "SRE_AGENT_COLLECTORS__LOKI__DELAY": "2",
            "SRE_AGENT_COLLECTORS__LOKI__QUERIES": json.dumps(
                [{"name": "errors", "expr": '{namespace="prod"} |= "ERROR"'}]),
            "SRE_AGENT_COLLECTORS__CLOUDWATCH__ENABLED": "true",
            "SRE_AGENT_COLLECTORS__CLOUDWATCH__INTERVAL": "1",
            "SRE_AGENT_COLLECTORS__CLOUDWATCH__DELAY": "0",
            "SRE_AGENT_COLLECTORS__CLOUDWATCH__NAMESPACES": '["AWS/RDS"]',
            "SRE_AGENT_AWS__REGION": "us-east-1",
            "SRE_AGENT_AWS__ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "SRE_AGENT_AWS__ACCESS_KEY_ID": "testing",
            "SRE_AGENT_AWS__SECRET_ACCESS_KEY": "testing",
        })
        prefix = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
        w.start()
        # after the Loki poller's first read, lines written now are read once they are
        # older than its 2 s delay (the first read only looks one interval back)
        await wait_for(lambda: w.status()["health"].get("collector.loki", {}).get("last_success"), 30)
        t = time.time()
        loki.push({"app": "order-service", "namespace": "prod"},
                  [(int((t + i * 0.1) * 1e9), f"ERROR payment timeout {i}") for i in range(3)])
        loki.push({"app": "order-service", "namespace": "prod"}, [(int(t * 1e9), "INFO fine")])

        # Prometheus is not up yet: the poller reports the error and backs off
        def prom_health() -> dict[str, Any]:
            return w.status()["health"].get("collector.prometheus", {})

        failing = await wait_for(lambda: (h := prom_health()).get("last_error") and h, 30)
        assert failing["ok"] is False and "queue_depth" in failing["last_error"]
        assert w.status()["status"] == "degraded"

        prom = PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{exporter.port}"],
                                f"{w.url}/api/v1/write", remote_write_token=TOKEN,
                                port=prom_port).start()
        await wait_for(lambda: prom_health().get("ok") and prom_health().get("last_success"), 30)

        def complete(msgs: list[dict[str, Any]]) -> bool:
            return ("queue_depth" in _series(msgs, "prometheus")
                    and "demo_queue_depth" in _series(msgs, "remote-write")
                    and "aws_rds_cpu_utilization_average" in _series(msgs, "cloudwatch"))

        msgs = await kafka_io.read(prefix + "metrics", complete, timeout=60)
        assert complete(msgs), f"worker log:\n{w.tail()}\nprometheus log:\n{prom.tail()}"
        polled = _series(msgs, "prometheus")["queue_depth"]
        assert polled["labels"] == {"service": "checkout"} and polled["points"][-1][1] == 7.5
        pushed = _series(msgs, "remote-write")["demo_queue_depth"]
        assert pushed["labels"]["service"] == "checkout" and pushed["points"][-1][1] == 7.5
        rds = _series(msgs, "cloudwatch")["aws_rds_cpu_utilization_average"]
        assert rds["labels"]["service"] == "orders-db" and rds["points"][0][1] == 55.0

        logs = await kafka_io.read(prefix + "logs", lambda m: len(m) >= 3, timeout=30)
        assert sorted(r["message"] for r in logs) == [f"ERROR payment timeout {i}" for i in range(3)]
        assert {r["service"] for r in logs} == {"order-service"}

        # the receiver refuses pushes without the token and undecodable ones (kept on the DLQ)
        status, body = _post(f"{w.url}/api/v1/write", b"x", {"Content-Encoding": "snappy"})
        assert status == 401 and "webhook token" in body["error"]  # the web layer's Gate
        status, body = _post(f"{w.url}/api/v1/write", b"\x05garbage",
                             {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                              "Authorization": f"Bearer {TOKEN}"})
        assert status == 400 and "invalid snappy block" in body["error"]
        dlq = await kafka_io.read(prefix + "metrics.dlq", lambda m: len(m) >= 1, timeout=30)
        assert dlq[0]["stage"] == "remote-write" and "invalid snappy block" in dlq[0]["error"]

        health = w.status()["health"]
        for name in ("collector.prometheus", "collector.loki", "collector.cloudwatch",
                     "collector.remote_write"):
            assert health[name]["ok"] is True, (name, health[name])
            assert health[name]["last_success"] is not None, (name, health[name])
        assert health["collector.remote_write"]["samples"] > 0
        assert health["collector.remote_write"]["rejected_requests"] == 2
        assert orjson.dumps(health)  # /status stays JSON-serializable
    finally:
        if prom is not None:
            prom.stop()
        moto.stop()
        await loki.stop()
        exporter.stop()
