"""A real single-node Apache Kafka broker (KRaft) from Maven Central jars.

The jars of ``org.apache.kafka:kafka_2.13`` and its runtime dependencies are
resolved once with Maven into a cache folder (git-ignored); later starts reuse
them. Each :class:`KafkaBroker` formats its own log dir and listens on a free
loopback port.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path

from .errors import DevstackError

__all__ = ["DEFAULT_KAFKA_VERSION", "KafkaBroker", "fetch_kafka", "free_port"]

log = logging.getLogger(__name__)

DEFAULT_KAFKA_VERSION = "4.1.1"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise DevstackError(f"{tool} not found on PATH: {hint}")
    return path


def fetch_kafka(cache_dir: Path, version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Resolve the broker jars into ``cache_dir/kafka-<version>/libs``; return that folder.

    Idempotent: a complete cache (marked by a ``.complete`` file) is reused.
    """
    libs = cache_dir / f"kafka-{version}" / "libs"
    marker = libs.parent / ".complete"
    if marker.exists():
        return libs
    mvn = _require("mvn", "install Maven (apt-get install maven) to fetch the Kafka broker jars")
    _require("java", "install a JDK 17+ (apt-get install openjdk-17-jre-headless)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    pom = libs.parent / "pom.xml"
    pom.write_bytes(resources.files(__package__).joinpath("pom.xml").read_bytes())
    tmp = libs.parent / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", version, libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(pom),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise DevstackError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} "
            f"(exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(version)
    return libs


class KafkaBroker:
    """Start/stop a combined broker+controller KRaft node on free ports.

    Parameters
    ----------
    work_dir
        Folder for this broker's data and log (created; removed by ``stop(clean=True)``).
    cache_dir
        Where the Maven-resolved jars are cached.
    port
        Client port; a free one is picked when ``None``.
    """

    def __init__(
        self,
        work_dir: Path,
        cache_dir: Path,
        version: str = DEFAULT_KAFKA_VERSION,
        port: int | None = None,
        heap: str = "768m",
    ) -> None:
        self.work_dir = Path(work_dir)
        self.cache_dir = Path(cache_dir)
        self.version = version
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Faust-style broker URL."""
        return f"kafka://{self.bootstrap}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "broker.log"

    def _java(self, libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = _require("java", "install a JDK 17+ (apt-get install openjdk-17-jre-headless)")
        log4j = self.work_dir / "log4j2.properties"
        return [
            java, f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{libs}/*", main, *args,
        ]

    def _write_config(self) -> Path:
        data = self.work_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.properties").write_bytes(
            resources.files(__package__).joinpath("log4j2.properties").read_bytes()
        )
        props = self.work_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        return props

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Fetch (if needed), format and start the broker; wait until it is ready."""
        libs = fetch_kafka(self.cache_dir, self.version)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.work_dir / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t",
                           _cluster_id(), "-c", str(props)),
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                raise DevstackError(f"kafka storage format failed: {fmt.stdout}\n{fmt.stderr}")
        else:
            # restart on the same data: keep the ports recorded in the config
            pass
        logf = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props), heap=self.heap),
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
        )
        logf.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise DevstackError(f"Kafka broker exited with {self.proc.returncode}:\n{tail}")
            with self.log_path.open("rb") as fh:
                fh.seek(max(0, offset - 65536))
                if b"Kafka Server started" in fh.read():
                    if _port_open(self.port):
                        return
            time.sleep(0.2)
        self.stop()
        raise DevstackError(f"Kafka broker not ready after {timeout}s; see {self.log_path}")

    def stop(self, clean: bool = False, timeout: float = 30.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); ``clean`` removes its data."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if clean:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop and start again on the same ports and data (for fault tests)."""
        self.stop()
        deadline = time.monotonic() + 15
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.start(timeout)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(clean=True)


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes, URL-safe base64 without padding; like
    # Kafka's own Uuid.randomUuid(), never start with "-" (the CLI would read an option)
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
