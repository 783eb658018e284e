"""Issue 15, deliverable 1: Kafka TLS for every client, on a real broker.

The devstack broker listens with TLS only (``SSL``) and requires client
certificates (mutual TLS); the CA and certificates are made for the test with
``cryptography`` (:func:`sre_agent.devstack.make_pki`). With nothing but the
product's settings (``SRE_AGENT_KAFKA__SECURITY_PROTOCOL=SSL``, ``SSL_CAFILE``,
``SSL_CERTFILE``, ``SSL_KEYFILE``):

* the admin client creates the topics, a producer and a consumer built from
  :func:`sre_agent.sinks.kafka.client_kwargs` round-trip an event;
* a worker (Faust, through :func:`~sre_agent.sinks.kafka.faust_credentials`, the
  read model and the other group-less consumers) becomes ready and turns an alert
  into an incident;
* a client trusting another CA, one without a client certificate and a plaintext
  client are all refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from sre_agent.config import load_settings
from sre_agent.devstack import KafkaBroker, Pki, default_cache_dir, make_pki
from sre_agent.schemas import Alert, encode
from sre_agent.sinks.kafka import client_kwargs
from sre_agent.streams.admin import ensure_topics
from tests.conftest import WorkerProcess, unique, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    broker = KafkaBroker(tmp_path_factory.mktemp("tls-kafka"), default_cache_dir(),
                         heap="512m", tls=pki)
    broker.start()
    yield broker
    broker.stop(clean=True)


def tls_env(broker: KafkaBroker, pki: Pki | None = None) -> dict[str, str]:
    """The product's settings for this broker (``pki``: trust another CA instead)."""
    env = broker.worker_env()
    assert env["SRE_AGENT_KAFKA__SECURITY_PROTOCOL"] == "SSL"
    if pki is not None:
        env["SRE_AGENT_KAFKA__SSL_CAFILE"] = str(pki.ca)
    return env


async def _connects(**kw: Any) -> str:
    """"ok" if a producer can start and send; else the error's class name."""
    producer = AIOKafkaProducer(**kw, request_timeout_ms=5000, metadata_max_age_ms=1000)
    try:
        await producer.start()
    except KafkaError as exc:
        return type(exc).__name__
    try:
        await producer.send_and_wait("tls-probe", b"{}")
        return "ok"
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await producer.stop()


async def test_clients_connect_with_the_products_tls_settings(tls_broker: KafkaBroker,
                                                              tmp_path: Path) -> None:
    settings = load_settings(env={**tls_env(tls_broker),
                                  "SRE_AGENT_KAFKA__TOPIC_PREFIX": unique("tls") + "."})
    assert settings.kafka.ssl_check_hostname  # the broker's certificate names 127.0.0.1
    created = await ensure_topics(settings, timeout=20)
    assert settings.topic("alerts") in created

    kw = client_kwargs(settings.kafka)
    assert kw["security_protocol"] == "SSL" and kw["ssl_context"] is not None
    topic, value = settings.topic("alerts"), uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(**kw)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, group_id=None, auto_offset_reset="earliest",
                                **client_kwargs(settings.kafka))
    await consumer.start()
    try:
        got: list[bytes] = []
        for _ in range(20):
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                got += [r.value for r in recs]
            if value in got:
                break
        assert value in got
    finally:
        await consumer.stop()

    # refused: another CA (the broker's certificate is not trusted), no client
    # certificate (mutual TLS required), plaintext on the TLS port
    other = make_pki(tmp_path / "other-ca")
    wrong_ca = client_kwargs(load_settings(env=tls_env(tls_broker, other)).kafka)
    assert await _connects(**wrong_ca) != "ok"
    no_cert = {k: v for k, v in tls_env(tls_broker).items()
               if k not in ("SRE_AGENT_KAFKA__SSL_CERTFILE", "SRE_AGENT_KAFKA__SSL_KEYFILE")}
    assert await _connects(**client_kwargs(load_settings(env=no_cert).kafka)) != "ok"
    assert await _connects(bootstrap_servers=tls_broker.bootstrap) != "ok"
    # the same settings with the right CA still connect (the refusals were the TLS checks)
    assert await _connects(**kw) == "ok"


async def test_a_worker_runs_over_tls(tls_broker: KafkaBroker, tmp_path: Path, wait_for) -> None:
    prefix = unique("tlsw") + "."
    wdir = tmp_path / "worker"
    wdir.mkdir()
    env = worker_env(tls_broker.url, prefix, wdir)
    env.update(tls_env(tls_broker))
    settings = load_settings(env=env)
    await ensure_topics(settings, timeout=20)
    w = WorkerProcess(env, wdir)
    try:
        w.start(timeout=120)
        kw = client_kwargs(settings.kafka)
        alert = Alert(fingerprint="fp-" + prefix, name="HighErrorRate", severity="critical",
                      service="checkout", labels={"namespace": "shop"})
        producer = AIOKafkaProducer(**kw)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic("alerts"), encode(alert),
                                         key=alert.key().encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(settings.topic("incidents"), group_id=None,
                                    auto_offset_reset="earliest", **kw)
        await consumer.start()
        seen: list[dict[str, Any]] = []
        try:
            async def incident() -> bool:
                for recs in (await consumer.getmany(timeout_ms=500)).values():
                    seen.extend(orjson.loads(r.value) for r in recs)
                return any("checkout" in (d.get("services") or []) for d in seen)

            await wait_for(incident, timeout=60, every=0.2)
        finally:
            await consumer.stop()
        assert w.status()["recovery"]["ready"]
    except BaseException:
        print(w.tail(8000))
        raise
    finally:
        w.stop()
