"""Collector jobs against the real servers or wire-level stand-ins (no Kafka needed).

* Prometheus: Debian's real ``prometheus`` scraping a prometheus-client exporter;
  the poller reads it through :class:`PrometheusClient`, and Prometheus's own
  ``remote_write`` is decoded by the receiver's decoder.
* CloudWatch: aiobotocore against moto's server mode (the AWS wire protocol).
* Loki: aiohttp against ``tests/standins/loki_server.py`` (Loki's HTTP API).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from moto.server import ThreadedMotoServer

from sre_agent.collectors import (
    CloudWatchJob,
    Collected,
    CollectorRunner,
    LokiClient,
    LokiQueryJob,
    PromQueryJob,
    decode_write_request,
)
from sre_agent.config import CloudWatchCollectorSettings, LokiQuerySettings, PromQuerySettings
from sre_agent.devstack import free_port
from sre_agent.sinks.prometheus import PrometheusClient
from tests.integration.prometheus_server import Exporter, PrometheusServer
from tests.standins.loki_server import LokiStandin

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------- Prometheus
async def test_poller_and_remote_write_against_real_prometheus(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    headers: list[dict[str, str]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers.append(dict(request.headers))
        got = decode_write_request(body, request.headers.get("Content-Encoding"),
                                   request.headers.get("Content-Type"))
        received.extend(got.series)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v1/write", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    rw_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", rw_port).start()
    exporter = Exporter().start()
    exporter.queue_depth.labels("checkout").set(7.5)
    exporter.requests.labels("checkout").inc(3)
    prom = PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{exporter.port}"],
                            f"http://127.0.0.1:{rw_port}/api/v1/write").start()
    try:
        async with aiohttp.ClientSession() as session:
            client = PrometheusClient(prom.url, session)
            jobs = [
                PromQueryJob(client, PromQuerySettings(name="queue_depth", expr='demo_queue_depth{job="demo"}',
                                                       labels={"team": "payments"}), 1.0, 3600, 8),
                PromQueryJob(client, PromQuerySettings(
                    name="requests_total", expr='sum by (service) (demo_requests_total{job="demo"})',
                    interval=1.0), 1.0, 3600, 8),
            ]
            events: list[Any] = []

            async def emit(c: Collected) -> None:
                events.extend(c.events)

            poller = CollectorRunner("prometheus", jobs, emit)
            end = time.monotonic() + 20
            while time.monotonic() < end and len({s["name"] for b in events for s in b.series}) < 2:
                await poller.tick(time.time(), clock=time.time)
                await asyncio.sleep(0.5)
            series = {s["name"]: s for b in events for s in b.series}
            assert set(series) == {"queue_depth", "requests_total"}, poller.health()
            qd = series["queue_depth"]
            assert qd["labels"]["service"] == "checkout" and qd["labels"]["team"] == "payments"
            assert qd["labels"]["metric"] == "demo_queue_depth"
            assert qd["points"][-1][1] == 7.5
            assert series["requests_total"]["labels"] == {"service": "checkout"}
            assert series["requests_total"]["points"][-1][1] == 3.0
            assert all(b.source == "prometheus" for b in events)
            health = poller.health()
            assert health["ok"] and health["last_success"] is not None

            # the same Prometheus pushes its samples with remote_write
            end = time.monotonic() + 30
            while time.monotonic() < end and not any(s["name"] == "demo_queue_depth" for s in received):
                await asyncio.sleep(0.3)
            pushed = [s for s in received if s["name"] == "demo_queue_depth"]
            assert pushed, f"no remote-write samples arrived:\n{prom.tail()}"
            assert pushed[0]["labels"]["service"] == "checkout" and pushed[0]["points"][0][1] == 7.5
            assert headers[0]["Content-Encoding"] == "snappy"
            assert headers[0]["X-Prometheus-Remote-Write-Version"].startswith("0.1")
    finally:
        prom.stop()
        exporter.stop()
        await runner.cleanup()


async def test_poller_reports_errors_from_prometheus(tmp_path: Path) -> None:
    exporter = Exporter().start()
    prom = PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{exporter.port}"]).start()
    try:
        async with aiohttp.ClientSession() as session:
            bad = PromQueryJob(PrometheusClient(prom.url, session),
                               PromQuerySettings(name="bad", expr="sum(("), 1.0, 3600, 8)

            async def emit(c: Collected) -> None:
                pass

            r = CollectorRunner("prometheus", [bad], emit)
            await r.tick(time.time())
            h = r.health()
            assert not h["ok"] and "bad_data" in h["last_error"], h
    finally:
        prom.stop()
        exporter.stop()


# ----------------------------------------------------------------- CloudWatch
@pytest.fixture
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
async def cloudwatch(moto_server: str) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "cloudwatch", region_name="eu-west-1", endpoint_url=moto_server,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ) as client:
        yield client


async def put_samples(client: Any, now: float) -> None:
    """One point every 10 s from 3 min ago to 2 min ahead, for EC2, RDS, ALB and ElastiCache."""
    stamps = [datetime.fromtimestamp(now - 180 + 10 * i, UTC) for i in range(31)]
    specs = [
        ("AWS/EC2", "CPUUtilization", "InstanceId", "i-0abc", 40.0),
        ("AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", "orders-db", 120.0),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", "app/web/123", 2.0),
        ("AWS/ElastiCache", "CurrConnections", "CacheClusterId", "sessions-001", 900.0),
    ]
    for ns, metric, dim, value, v in specs:
        await client.put_metric_data(Namespace=ns, MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": dim, "Value": value}],
             "Timestamp": ts, "Value": v} for ts in stamps])


async def test_cloudwatch_job_reads_ec2_rds_elb_elasticache(cloudwatch: Any) -> None:
    now = time.time()
    await put_samples(cloudwatch, now)
    settings = CloudWatchCollectorSettings(enabled=True, period=60, delay=0, interval=1)
    job = CloudWatchJob(cloudwatch, settings, "eu-west-1", shards=8)
    got = await job.collect(now)
    job.commit(got.cursor)
    series = {s["name"]: s for b in got.events for s in b.series}
    assert set(series) == {
        "aws_ec2_cpu_utilization_average",
        "aws_rds_database_connections_average",
        "aws_applicationelb_http_code_target_5xx_count_sum",
        "aws_elasticache_curr_connections_average",
    }
    rds = series["aws_rds_database_connections_average"]
    assert rds["labels"] == {"DBInstanceIdentifier": "orders-db", "namespace": "AWS/RDS",
                             "region": "eu-west-1", "service": "orders-db"}
    assert rds["points"] == [(got.cursor - 60, 120.0)]
    assert series["aws_applicationelb_http_code_target_5xx_count_sum"]["points"][0][1] == 12.0
    assert all(b.source == "cloudwatch" for b in got.events)
    # nothing new within the same period; the next period follows on without overlap
    again = await job.collect(now + 1)
    assert again.events == [] and again.cursor == got.cursor
    later = await job.collect(now + 60)
    assert {p[0] for b in later.events for s in b.series for p in s["points"]} == {got.cursor}


async def test_cloudwatch_errors_surface_in_health(moto_server: str) -> None:
    async with get_session().create_client(
        "cloudwatch", region_name="eu-west-1", endpoint_url=moto_server.rsplit(":", 1)[0] + f":{free_port()}",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=AioConfig(retries={"max_attempts": 1}, connect_timeout=2),
    ) as client:
        settings = CloudWatchCollectorSettings(enabled=True, period=60, delay=0, interval=1)

        async def emit(c: Collected) -> None:
            pass

        r = CollectorRunner("cloudwatch", [CloudWatchJob(client, settings, "eu-west-1", 8)], emit)
        await r.tick(time.time())
        h = r.health()
        assert not h["ok"] and "Connect" in h["last_error"], h


# ----------------------------------------------------------------------- Loki
@pytest.fixture
async def loki() -> AsyncIterator[LokiStandin]:
    standin = await LokiStandin().start()
    yield standin
    await standin.stop()


async def test_loki_job_reads_error_lines_per_service_page_by_page(loki: LokiStandin) -> None:
    now = time.time()
    t0 = int((now - 30) * 1e9)
    loki.push({"app": "order-service", "namespace": "prod", "level": "error"},
              [(t0 + i * 1000, f"ERROR db timeout #{i}") for i in range(25)])
    loki.push({"app": "order-service", "namespace": "prod"}, [(t0 + 5, "INFO all good")])
    loki.push({"service": "wallet", "namespace": "prod"}, [(t0 + 7, "panic: nil map")])
    loki.push({"app": "other", "namespace": "dev"}, [(t0 + 9, "ERROR ignored (dev)")])
    async with aiohttp.ClientSession() as session:
        q = LokiQuerySettings(name="errors", expr='{namespace="prod"} |~ "(?i)(error|panic)"')
        job = LokiQueryJob(LokiClient(loki.url, session), q, default_interval=60, limit=10,
                           max_catchup=3600, delay=0)
        got = await job.collect(now)
        job.commit(got.cursor)
    by_service: dict[str, list[str]] = {}
    for rec in got.events:
        by_service.setdefault(rec.service, []).append(rec.message)
    assert sorted(by_service) == ["order-service", "wallet"]
    assert by_service["order-service"] == [f"ERROR db timeout #{i}" for i in range(25)]
    assert by_service["wallet"] == ["panic: nil map"]
    levels = {r.service: r.level for r in got.events}
    assert levels == {"order-service": "error", "wallet": "error"}
    assert len(loki.requests) == 3  # 26 lines in pages of 10
    assert all(r["direction"] == "forward" for r in loki.requests)


async def test_loki_job_continues_from_its_cursor_and_backs_off(loki: LokiStandin) -> None:
    async with aiohttp.ClientSession() as session:
        q = LokiQuerySettings(name="errors", expr='{app=~".+"} |= "ERROR"', interval=1)
        job = LokiQueryJob(LokiClient(loki.url, session), q, default_interval=60, delay=0)
        sent: list[Any] = []

        async def emit(c: Collected) -> None:
            sent.extend(c.events)

        r = CollectorRunner("loki", [job], emit)
        now = time.time()
        loki.push({"app": "api"}, [(int((now - 0.5) * 1e9), "ERROR one")])
        await r.tick(now)
        loki.push({"app": "api"}, [(int((now + 0.5) * 1e9), "ERROR two")])
        loki.fail_next = 1
        await r.tick(now + 1)
        h = r.health()
        assert not h["ok"] and "HTTP 500" in h["last_error"]
        await r.tick(now + 3)  # backoff: 2 s
        assert [e.message for e in sent] == ["ERROR one", "ERROR two"]
        assert r.health()["ok"]


async def test_loki_metric_query_is_refused_clearly(loki: LokiStandin) -> None:
    async with aiohttp.ClientSession() as session:
        q = LokiQuerySettings(name="bad", expr="rate({app=~\".+\"}[1m])")
        job = LokiQueryJob(LokiClient(loki.url, session), q, default_interval=60, delay=0)
        with pytest.raises(Exception, match="HTTP 400"):
            await job.collect(time.time())
