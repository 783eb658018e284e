"""A throwaway PostgreSQL cluster from Debian's server binaries.

PostgreSQL refuses to run as root, so when we are root the cluster is owned by
and run as a dedicated unprivileged user (``postgres`` if it exists, else
``sreagent-pg`` created with ``useradd``).
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import DevstackError
from .kafka import free_port

__all__ = ["PostgresServer", "find_pg_bin"]

log = logging.getLogger(__name__)


def find_pg_bin() -> Path:
    """Folder holding ``initdb``/``pg_ctl``/``postgres``."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in cands:
        if (Path(c) / "initdb").exists() and (Path(c) / "postgres").exists():
            return Path(c)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise DevstackError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: "
        "install Debian's server with `apt-get install -y postgresql`"
    )


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "sreagent-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "sreagent-pg"], check=True)
    return "sreagent-pg"


class PostgresServer:
    """initdb + pg_ctl start on a free port, trust auth on loopback only."""

    def __init__(self, base_dir: Path | None = None, port: int | None = None,
                 user: str = "sre", database: str = "sre") -> None:
        self.bin = find_pg_bin()
        self.os_user = _service_user()
        # the data dir must be reachable by the service user: not under /root
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="sre-pg-"))
        self.data_dir = self.base_dir / "data"
        self.port = port or free_port()
        self.user = user
        self.database = database

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise DevstackError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n"
                                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc

    def start(self) -> PostgresServer:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            info = pwd.getpwnam(self.os_user)
            os.chown(self.base_dir, info.pw_uid, info.pw_gid)
            os.chmod(self.base_dir, 0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                      "-A", "trust", "-E", "UTF8", "--no-instructions")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base_dir} "
                "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-o", opts,
                  "-l", str(self.base_dir / "postgres.log"), "-w", "-t", "60", "start")
        self._run(str(self.bin / "createdb") if (self.bin / "createdb").exists() else "createdb",
                  "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database,
                  check=False)
        return self

    def stop(self, clean: bool = False) -> None:
        """Stop the server (fast mode); ``clean`` removes the cluster."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                      "-w", "stop", check=False)
        if clean:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def start_again(self) -> None:
        """Start after :meth:`stop` on the same port and data (for fault tests)."""
        self.start()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(clean=True)
