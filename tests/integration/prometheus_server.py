"""A real Prometheus server (Debian's ``prometheus`` package) and a tiny exporter for tests.

``scripts/install-system-deps.sh`` installs Prometheus; a missing binary makes
:meth:`PrometheusServer.start` raise, so the tests fail instead of skipping.
Each server gets a generated config, a free port and its TSDB in a temporary
directory; it scrapes :class:`Exporter` (``prometheus-client``'s HTTP server on
its own registry) every second and may ``remote_write`` to a URL.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from sre_agent.devstack import free_port

__all__ = ["Exporter", "PrometheusServer"]


class Exporter:
    """``demo_queue_depth`` (gauge) and ``demo_requests_total`` (counter) on a free port."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge("demo_queue_depth", "items waiting", ["service"],
                                 registry=self.registry)
        self.requests = Counter("demo_requests", "requests served", ["service"],
                                registry=self.registry)
        self.port = free_port()
        self._server: Any = None

    def start(self) -> Exporter:
        self._server, _thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class PrometheusServer:
    def __init__(self, workdir: Path, scrape_targets: list[str], remote_write_url: str | None = None,
                 remote_write_token: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.targets = scrape_targets
        self.remote_write_url = remote_write_url
        self.remote_write_token = remote_write_token
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "demo", "static_configs": [{"targets": self.targets}]}],
        }
        if self.remote_write_url:
            rw: dict[str, Any] = {
                "url": self.remote_write_url,
                "remote_timeout": "5s",
                "queue_config": {"batch_send_deadline": "500ms", "min_backoff": "100ms",
                                 "max_backoff": "1s", "max_samples_per_send": 500},
                "metadata_config": {"send": False},
            }
            if self.remote_write_token:
                rw["authorization"] = {"credentials": self.remote_write_token}
            cfg["remote_write"] = [rw]
        return cfg

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: run scripts/install-system-deps.sh "
                               "(apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
