"""Real local infrastructure for the demo, the tests and the benchmarks.

- :class:`KafkaBroker`: Apache Kafka (KRaft, single node) from Maven Central jars.
- :class:`PostgresServer`: a throwaway PostgreSQL cluster from Debian's binaries.
- :func:`make_pki`: a throwaway CA and certificates for the broker's TLS listener.

A missing Java, Maven or PostgreSQL raises :class:`DevstackError` with what to
install; nothing here is ever silently skipped.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DevstackError
from .kafka import DEFAULT_KAFKA_VERSION, KafkaBroker, fetch_kafka, fetch_kafka_tools, free_port
from .postgres import PostgresServer, find_pg_bin
from .tls import Pki, make_pki

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "DevstackError",
    "KafkaBroker",
    "Pki",
    "PostgresServer",
    "default_cache_dir",
    "fetch_kafka",
    "fetch_kafka_tools",
    "find_pg_bin",
    "free_port",
    "make_pki",
]


def default_cache_dir() -> Path:
    """``<project>/.cache`` when run from a checkout, else ``~/.cache/sre-agent``."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / ".git").exists():
            return parent / ".cache"
    return Path.home() / ".cache" / "sre-agent"
