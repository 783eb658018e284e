"""A real single-node Apache Kafka broker (KRaft) from Maven Central jars.

The jars of ``org.apache.kafka:kafka_2.13`` and its runtime dependencies are
resolved once with Maven into a cache folder (git-ignored); later starts reuse
them. Each :class:`KafkaBroker` formats its own log dir and listens on a free
loopback port.

With ``scram_users`` the client listener requires SASL/SCRAM-SHA-512 (the users
are created when the storage is formatted) and the StandardAuthorizer enforces
ACLs (nothing is allowed without one; ``admin_user`` is a super user). ACLs are
added with Kafka's own ``kafka-acls`` tool (:meth:`KafkaBroker.acls`, the same
command line as the recipe in ``docs/deploy.md``), whose jars are resolved on
first use into a folder of their own (:func:`fetch_kafka_tools`).

With ``tls`` (a :class:`~.tls.Pki` from :func:`~.tls.make_pki`) the client
listener speaks TLS (``SSL``, or ``SASL_SSL`` with ``scram_users``) with the
PKI's broker certificate, and requires client certificates signed by its CA
unless ``tls_client_auth`` says otherwise.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import DevstackError
from .tls import Pki

__all__ = ["DEFAULT_KAFKA_VERSION", "KafkaBroker", "fetch_kafka", "fetch_kafka_tools",
           "free_port"]

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
    return _fetch(cache_dir, version, "libs", "pom.xml")


def fetch_kafka_tools(cache_dir: Path, version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Resolve Kafka's command-line tools into ``cache_dir/kafka-<version>/tools``."""
    return _fetch(cache_dir, version, "tools", "pom-tools.xml", jar="kafka-tools-*.jar")


def _fetch(cache_dir: Path, version: str, folder: str, pom_name: str,
           jar: str = "kafka_2.13-*.jar") -> Path:
    libs = cache_dir / f"kafka-{version}" / folder
    marker = libs.parent / (".complete" if folder == "libs" else f".complete-{folder}")
    if marker.exists():
        return libs
    mvn = _require("mvn", "install Maven (apt-get install maven) to fetch the Kafka broker jars")
    _require("java", "install a JDK 17+ (apt-get install openjdk-17-jre-headless)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    # one fetch at a time per cache: processes started together on an empty cache (test
    # workers under xdist) wrote into one partial folder and one failed to copy its jars
    with open(libs.parent / f".fetch-{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # fetched by another process while this one waited
            return libs
        return _fetch_locked(libs, marker, mvn, version, folder, pom_name, jar)


def _fetch_locked(libs: Path, marker: Path, mvn: str, version: str, folder: str,
                  pom_name: str, jar: str) -> Path:
    pom = libs.parent / pom_name
    pom.write_bytes(resources.files(__package__).joinpath(pom_name).read_bytes())
    tmp = libs.parent / f"{folder}.partial"
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
    if proc.returncode != 0 or not any(tmp.glob(jar)):
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
        scram_users: Mapping[str, str] | None = None,
        admin_user: str = "admin",
        tls: Pki | None = None,
        tls_client_auth: str = "required",
    ) -> None:
        self.scram_users = dict(scram_users or {})
        if self.scram_users and admin_user not in self.scram_users:
            raise DevstackError(f"scram_users must include the admin user {admin_user!r}")
        self.admin_user = admin_user
        self.tls = tls
        self.tls_client_auth = tls_client_auth
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
    def secured(self) -> bool:
        return bool(self.scram_users)

    @property
    def protocol(self) -> str:
        """The client listener's security protocol."""
        return {(False, False): "PLAINTEXT", (True, False): "SASL_PLAINTEXT",
                (False, True): "SSL", (True, True): "SASL_SSL"}[(self.secured, self.tls is not None)]

    def client_config(self, user: str | None = None) -> dict[str, Any]:
        """aiokafka keyword arguments to connect as ``user`` (default: the admin)."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap,
                              "security_protocol": self.protocol}
        if self.tls is not None:
            import ssl

            ctx = ssl.create_default_context(cafile=str(self.tls.ca))
            ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
            kw["ssl_context"] = ctx
        if self.secured:
            name = user or self.admin_user
            kw.update(sasl_mechanism="SCRAM-SHA-512",
                      sasl_plain_username=name, sasl_plain_password=self.scram_users[name])
        return kw

    def worker_env(self, user: str | None = None) -> dict[str, str]:
        """``SRE_AGENT_KAFKA__*`` variables of an agent connecting as ``user``."""
        env = {"SRE_AGENT_KAFKA__BROKER": self.url}
        if self.protocol != "PLAINTEXT":
            env["SRE_AGENT_KAFKA__SECURITY_PROTOCOL"] = self.protocol
        if self.tls is not None:
            env.update({"SRE_AGENT_KAFKA__SSL_CAFILE": str(self.tls.ca),
                        "SRE_AGENT_KAFKA__SSL_CERTFILE": str(self.tls.client_cert),
                        "SRE_AGENT_KAFKA__SSL_KEYFILE": str(self.tls.client_key)})
        if self.secured:
            name = user or self.admin_user
            env.update({"SRE_AGENT_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                        "SRE_AGENT_KAFKA__SASL_USERNAME": name,
                        "SRE_AGENT_KAFKA__SASL_PASSWORD": self.scram_users[name]})
        return env

    def acls(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``kafka-acls --bootstrap-server <this> --command-config <admin> <args>``."""
        tools = fetch_kafka_tools(self.cache_dir, self.version)
        conf = self.work_dir / "admin-client.properties"
        lines = [f"security.protocol={self.protocol}"]
        if self.secured:
            pw = self.scram_users[self.admin_user]
            lines += ["sasl.mechanism=SCRAM-SHA-512",
                      "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                      f'required username="{self.admin_user}" password="{pw}";']
        lines += self._tls_lines()
        conf.write_text("\n".join(lines) + "\n")
        cmd = self._java(tools, "org.apache.kafka.tools.AclCommand", "--bootstrap-server",
                         self.bootstrap, "--command-config", str(conf), *args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise DevstackError(f"kafka-acls {' '.join(args)} failed ({proc.returncode}):\n"
                                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc.stdout

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

    def _tls_lines(self) -> list[str]:
        """Kafka's PEM key and trust store settings (broker and its admin tools)."""
        if self.tls is None:
            return []
        return ["ssl.keystore.type=PEM", f"ssl.keystore.location={self.tls.broker}",
                "ssl.truststore.type=PEM", f"ssl.truststore.location={self.tls.ca}"]

    def _write_config(self) -> Path:
        data = self.work_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.properties").write_bytes(
            resources.files(__package__).joinpath("log4j2.properties").read_bytes()
        )
        props = self.work_dir / "server.properties"
        client = self.protocol
        security: list[str] = [f"inter.broker.listener.name={client}", *self._tls_lines()]
        if self.tls is not None:
            security.append(f"ssl.client.auth={self.tls_client_auth}")
        if self.secured:
            pw = self.scram_users[self.admin_user]
            security += [
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                f"listener.name.{client.lower()}.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{self.admin_user}" password="{pw}";',
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # the controller listener is loopback-only and unauthenticated in the devstack
                f"super.users=User:{self.admin_user};User:ANONYMOUS",
                "allow.everyone.if.no.acl.found=false",
            ]
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners={client}://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners={client}://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    f"listener.security.protocol.map={client}:{client},CONTROLLER:PLAINTEXT",
                    *security,
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
            scram = [arg for user, pw in sorted(self.scram_users.items())
                     for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={pw}]")]
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t",
                           _cluster_id(), "-c", str(props), *scram),
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
