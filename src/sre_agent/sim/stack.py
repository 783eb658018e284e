"""The local stack the eval and the demo run on: Kafka, PostgreSQL, one worker.

Real processes only: :class:`~sre_agent.devstack.KafkaBroker` (or an existing
broker), :class:`~sre_agent.devstack.PostgresServer` when asked, and
``python -m sre_agent worker`` as a subprocess configured through its
environment, with the simulated platform's dependency graph as
``correlation.edges`` and auto-remediation on (the simulator is the cluster).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .replay import SIM_SIGNER, VOTERS
from .topology import Topology

__all__ = ["LocalStack", "agent_env", "worker_env"]

log = logging.getLogger(__name__)


def agent_env(topology: Topology) -> dict[str, str]:
    """Settings (as env vars) an agent needs to watch the simulated platform."""
    approvers = {user: role for voters in VOTERS.values() for user, role in voters}
    return {
        "SRE_AGENT_CORRELATION__EDGES": json.dumps([list(e) for e in topology.edges]),
        # the simulator stands in for the cluster: LOW-risk plans run without a human
        "SRE_AGENT_ACTIONS__AUTO_REMEDIATION": "true",
        "SRE_AGENT_ACTIONS__APPROVERS": json.dumps(approvers),
        # the replay signs the simulated on-call's votes with the same key
        "SRE_AGENT_SECURITY__SIGNING_KEY": SIM_SIGNER.private_pem(),
    }


def worker_env(broker_url: str, prefix: str, data_dir: Path, port: int,
               topology: Topology, pg_dsn: str | None = None,
               extra: dict[str, str] | None = None,
               base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a worker that watches the simulated platform."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if not k.startswith("SRE_AGENT_")}
    env.update({
        "SRE_AGENT_KAFKA__BROKER": broker_url,
        "SRE_AGENT_KAFKA__TOPIC_PREFIX": prefix,
        "SRE_AGENT_KAFKA__PARTITIONS": "2",
        "SRE_AGENT_WORKER__APP_ID": "eval-" + prefix.rstrip("."),
        "SRE_AGENT_WORKER__DATA_DIR": str(data_dir),
        "SRE_AGENT_WORKER__WEB_PORT": str(port),
        "SRE_AGENT_WORKER__LOG_JSON": "false",
        **agent_env(topology),
    })
    if pg_dsn:
        env["SRE_AGENT_POSTGRES__DSN"] = pg_dsn
    env.update(extra or {})
    return env


@dataclass
class LocalStack:
    """Starts what is missing; :meth:`stop` stops only what it started."""

    workdir: Path
    broker_url: str | None = None
    postgres: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    port: int = 0
    pg_dsn: str | None = None
    _broker: Any = None
    _pg: Any = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        assert self.broker_url
        return ",".join(p.split("://", 1)[-1] for p in self.broker_url.split(";"))

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/status"

    @property
    def log_path(self) -> Path:
        return self.workdir / "worker.log"

    def start(self, topology: Topology, say: Any = print) -> LocalStack:
        from ..devstack import KafkaBroker, PostgresServer, default_cache_dir, free_port

        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.broker_url is None:
            say("starting Apache Kafka (KRaft) ...")
            self._broker = KafkaBroker(self.workdir / "kafka", default_cache_dir()).start()
            self.broker_url = self._broker.url
        if self.postgres and self.pg_dsn is None:
            say("starting PostgreSQL ...")
            self._pg = PostgresServer().start()
            self.pg_dsn = self._pg.dsn
        self.prefix = self.prefix or f"sim-{uuid.uuid4().hex[:8]}."
        self.port = self.port or free_port()
        env = worker_env(self.broker_url, self.prefix, self.workdir / f"data-{self.prefix}",
                         self.port, topology, self.pg_dsn, self.extra_env)
        say(f"starting the agent worker (topics '{self.prefix}*', log {self.log_path}) ...")
        with self.log_path.open("ab") as fh:
            self._proc = subprocess.Popen([sys.executable, "-m", "sre_agent", "worker"],
                                          env=env, stdout=fh, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self._proc.returncode}; "
                                   f"see {self.log_path}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.status_url, timeout=3) as r:
                    if orjson.loads(r.read())["recovery"]["ready"]:
                        return
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready after {timeout:.0f}s; see {self.log_path}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
        if self._pg is not None:
            self._pg.stop(clean=True)
            self._pg = None
        if self._broker is not None:
            self._broker.stop(clean=True)
            self._broker = None
