"""``sre-agent`` command line: the only entry point that reads the environment.

Subcommands register themselves in :data:`COMMANDS` (name -> (help, add_args,
run)); ``run(args, settings_factory)`` returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError, Settings, load_settings
from .logs import setup_logging

__all__ = ["COMMANDS", "main"]

log = logging.getLogger(__name__)

SettingsFactory = Callable[[], Settings]
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, SettingsFactory], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> Callable[[Callable[[argparse.Namespace, SettingsFactory], int]], Callable[[argparse.Namespace, SettingsFactory], int]]:
    def deco(fn: Callable[[argparse.Namespace, SettingsFactory], int]) -> Callable[[argparse.Namespace, SettingsFactory], int]:
        COMMANDS[name] = (help, add_args or (lambda p: None), fn)
        return fn

    return deco


# ---------------------------------------------------------------- worker
@command("worker", "run the Faust worker (all stages)")
def _worker(args: argparse.Namespace, settings: SettingsFactory) -> int:
    from faust import Worker

    from .streams import create_app
    from .streams.admin import ensure_topics_sync

    s = settings()
    ensure_topics_sync(s)
    app, _ctx = create_app(s)
    worker = Worker(app, loglevel=s.worker.log_level, quiet=True, redirect_stdouts=False)
    # Worker handles SIGTERM/SIGINT: stop consuming, flush, commit, close
    worker.execute_from_commandline()
    return 0


# ---------------------------------------------------------------- schemas
def _schemas_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["export"])
    p.add_argument("directory", type=Path)


@command("schemas", "export the JSON Schema of every topic", _schemas_args)
def _schemas(args: argparse.Namespace, settings: SettingsFactory) -> int:
    from .schemas import export_json_schemas

    for path in export_json_schemas(args.directory):
        print(path)
    return 0


# ---------------------------------------------------------------- devstack
def _devstack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "up"], help="fetch: cache the Kafka jars; "
                   "up: start Kafka + PostgreSQL in the foreground until Ctrl-C")
    p.add_argument("--dir", type=Path, default=Path(".devstack"))


@command("devstack", "local Apache Kafka (KRaft) + PostgreSQL for development", _devstack_args)
def _devstack(args: argparse.Namespace, settings: SettingsFactory) -> int:
    import signal
    import threading

    from .devstack import KafkaBroker, PostgresServer, default_cache_dir, fetch_kafka

    if args.action == "fetch":
        print(fetch_kafka(default_cache_dir()))
        return 0
    broker = KafkaBroker(args.dir / "kafka", default_cache_dir()).start()
    pg = PostgresServer().start()
    print(f"SRE_AGENT_KAFKA__BROKER={broker.url}")
    print(f"SRE_AGENT_POSTGRES__DSN={pg.dsn}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop(clean=True)
        pg.stop(clean=True)
    return 0


def _register_more() -> None:
    """Import the modules whose commands live beside their code."""
    from .commands import load_all

    load_all()


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    _register_more()
    parser = argparse.ArgumentParser(prog="sre-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML config file (or SRE_AGENT_CONFIG)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, (help_, add_args, _run) in sorted(COMMANDS.items()):
        add_args(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    environ = dict(os.environ if env is None else env)

    cached: list[Settings] = []

    def settings() -> Settings:
        if not cached:
            cached.append(load_settings(args.config, env=environ))
        return cached[0]

    try:
        s = settings()
    except ConfigError as exc:
        print(f"sre-agent: {exc}", file=sys.stderr)
        return 2
    setup_logging(s.worker.log_level, json_format=s.worker.log_json,
                  framework_level=s.worker.framework_log_level)
    _help, _add, run = COMMANDS[args.cmd]
    try:
        return run(args, settings)
    except ConfigError as exc:
        print(f"sre-agent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _entry() -> Any:  # pragma: no cover
    sys.exit(main())
