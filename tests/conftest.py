"""Session fixtures: the real Apache Kafka broker and a throwaway PostgreSQL.

Both are started once per test session by :mod:`sre_agent.devstack`. A missing
Java, Maven or PostgreSQL makes these fixtures *fail* (never skip).

Integration tests use :func:`unique` names (topic prefix, app id) so tests do
not see each other's data, and :class:`WorkerProcess` to run the real
``sre-agent worker`` as a subprocess that can be stopped, killed and restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sre_agent.devstack import KafkaBroker, PostgresServer, default_cache_dir, free_port
from tests import ast_guard
from tests.signing_support import TEST_SIGNING_KEY

ast_guard.install()  # before any test starts a thread: see tests/ast_guard.py

_counter = itertools.count()


def unique(prefix: str = "t") -> str:
    """A short unique name for topics prefixes, app ids and groups."""
    return f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), default_cache_dir())
    t0 = time.monotonic()
    broker.start()
    print(f"\n[devstack] Kafka {broker.version} ready at {broker.bootstrap} "
          f"in {time.monotonic() - t0:.1f}s")
    yield broker
    broker.stop(clean=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    pg = PostgresServer()
    pg.start()
    yield pg
    pg.stop(clean=True)


@pytest.fixture(scope="session")
def pg_dsn(postgres: PostgresServer) -> str:
    return postgres.dsn


class WorkerProcess:
    """``python -m sre_agent worker`` with its own env, data dir and web port."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.port = int(env["SRE_AGENT_WORKER__WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "worker.log"
        self.starts = 0
        tokens = orjson.loads(env.get("SRE_AGENT_API__TOKENS") or "{}")
        #: the first configured API token (the API needs one for everything but /status)
        self.token: str | None = next(iter(tokens), None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self.starts += 1
        with self.log.open("ab") as fh:
            fh.write(f"\n===== start #{self.starts} =====\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", "sre_agent", "worker"],
                                         env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.status()["recovery"]["ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def status(self) -> dict[str, Any]:
        return self.get_json("/status")

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        """GET ``path``; without ``headers`` it sends the worker's first API token."""
        if headers is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            return orjson.loads(r.read())

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def worker_env(broker_url: str, prefix: str, wdir: Path) -> dict[str, str]:
    """The environment of a test worker: this process's minus SRE_AGENT_*, plus its own
    broker, topic prefix, app id, data dir, free web port and a viewer API token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
    env.update({
        "SRE_AGENT_KAFKA__BROKER": broker_url,
        "SRE_AGENT_KAFKA__TOPIC_PREFIX": prefix,
        "SRE_AGENT_KAFKA__PARTITIONS": "2",
        "SRE_AGENT_WORKER__APP_ID": "app-" + prefix.rstrip("."),
        "SRE_AGENT_WORKER__DATA_DIR": str(wdir / "data"),
        "SRE_AGENT_WORKER__WEB_PORT": str(free_port()),
        "SRE_AGENT_WORKER__CHECKPOINT_INTERVAL": "0.5",
        "SRE_AGENT_WORKER__LOG_JSON": "false",
        # rebalances and changelog recovery step by step in worker.log (for failures)
        "SRE_AGENT_WORKER__FRAMEWORK_LOG_LEVEL": "INFO",
        # a viewer token, so tests can read the API (nothing but /status is anonymous)
        "SRE_AGENT_API__TOKENS": '{"conftest-viewer-token": "viewer:conftest"}',
        # one decision-signing key for every worker of a test (tests.signing_support)
        "SRE_AGENT_SECURITY__SIGNING_KEY": TEST_SIGNING_KEY,
    })
    return env


@pytest.fixture
def worker_factory(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Make workers on the session broker; each test gets a unique topic prefix/app id.

    ``worker_factory(extra_env={...}, prefix=None)``; workers made in one test
    share the prefix and app id unless ``prefix`` is given.
    """
    made: list[WorkerProcess] = []
    default_prefix = unique("w") + "."

    def make(extra_env: dict[str, str] | None = None, prefix: str | None = None,
             name: str | None = None) -> WorkerProcess:
        pfx = prefix or default_prefix
        wdir = tmp_path / (name or f"worker{len(made)}")
        wdir.mkdir(parents=True, exist_ok=True)
        env = worker_env(kafka_broker.url, pfx, wdir)
        env.update(extra_env or {})
        w = WorkerProcess(env, wdir)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


class KafkaIO:
    """Produce events and read topics on the session broker (aiokafka)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=2)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key)

    async def send(self, topic: str, event: Any) -> None:
        from sre_agent.schemas import encode

        key = event.key()
        await self._producer.send_and_wait(topic, value=encode(event),
                                           key=key.encode() if key else None)

    async def send_signed(self, topic: str, event: Any) -> None:
        """Produce a decision event signed as the test workers sign theirs."""
        from tests.signing_support import signed_bytes

        key = event.key()
        await self._producer.send_and_wait(topic, value=signed_bytes(event),
                                           key=key.encode() if key else None)

    async def read(self, topic: str, until: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 60.0) -> list[dict[str, Any]]:
        """Read ``topic`` from the start until ``until(messages)`` or timeout."""
        from aiokafka import AIOKafkaConsumer

        cons = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap,
                                auto_offset_reset="earliest", group_id=None,
                                metadata_max_age_ms=1000)
        await cons.start()
        out: list[dict[str, Any]] = []
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end and not until(out):
                recs = await cons.getmany(timeout_ms=300)
                for batch in recs.values():
                    out.extend(orjson.loads(r.value) for r in batch)
        finally:
            await cons.stop()
        return out


@pytest.fixture
async def kafka_io(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaIO]:
    io = KafkaIO(kafka_broker.bootstrap)
    await io.start()
    yield io
    await io.stop()


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``await wait_for(cond, timeout)`` polls a sync or async predicate."""

    async def _wait(cond: Callable[[], Any], timeout: float = 30.0, every: float = 0.3) -> Any:
        end = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < end:
            last = cond()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
            await asyncio.sleep(every)
        raise AssertionError(f"condition not met in {timeout}s (last={last!r})")

    return _wait
