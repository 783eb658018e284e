"""``sre-agent`` command line: the only entry point that reads the environment.

Subcommands register themselves in :data:`COMMANDS` (name -> (help, add_args,
run)); ``run(args, settings_factory)`` returns the exit code. A command's
description (``sre-agent CMD --help``) is its function's docstring, else its
module's.

Failing well: every error is one line on stderr, ``sre-agent: error: ...``
(warnings ``sre-agent: warning: ...``), never a traceback unless ``--debug``;
the exit code says what kind of failure it was (:class:`Exit`). A command
raises :class:`CliError` (or a subclass) or returns a code; exceptions of the
client libraries that mean "cannot reach it" (Kafka, PostgreSQL, HTTP, a
refused or timed-out connection) are mapped to :attr:`Exit.UNAVAILABLE` here,
in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import ConfigError, Settings, load_settings
from .logs import setup_logging

__all__ = ["COMMANDS", "CliError", "Exit", "IOFailure", "Unavailable", "UsageError", "main",
           "warn"]

log = logging.getLogger(__name__)

PREFIX = "sre-agent: "

SettingsFactory = Callable[[], Settings]
Run = Callable[[argparse.Namespace, SettingsFactory], int]
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Run]
COMMANDS: dict[str, Command] = {}


class Exit(enum.IntEnum):
    """Exit codes of every ``sre-agent`` command (README, "Command line")."""

    OK = 0
    #: the command ran and its check failed (audit chain broken, files that did not score ...)
    FAILED = 1
    #: bad arguments or configuration
    USAGE = 2
    #: a dependency cannot be reached: Kafka, PostgreSQL, Prometheus, another HTTP service
    UNAVAILABLE = 3
    #: a file cannot be read or written
    IO = 4
    #: a bug: one line here, the traceback with ``--debug``
    INTERNAL = 70
    INTERRUPTED = 130


class CliError(Exception):
    """An error the CLI reports as one line, exiting with :attr:`code`."""

    code = Exit.FAILED

    def __init__(self, message: str, code: Exit | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(CliError):
    code = Exit.USAGE


class Unavailable(CliError):
    """``what`` (Kafka, PostgreSQL ...) at ``where`` cannot be reached."""

    code = Exit.UNAVAILABLE

    def __init__(self, what: str, where: str | None, cause: BaseException | str) -> None:
        at = f" at {where}" if where else ""
        super().__init__(f"cannot reach {what}{at}: {_reason(cause)}")


class IOFailure(CliError):
    code = Exit.IO


def _reason(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    text = str(exc).strip() or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error(message: str, code: Exit = Exit.FAILED) -> int:
    """Print ``sre-agent: error: <message>`` on stderr (one line); return ``code``."""
    print(f"{PREFIX}error: {_one_line(message)}", file=sys.stderr, flush=True)
    return int(code)


def warn(message: str) -> None:
    """Print ``sre-agent: warning: <message>`` on stderr (one line)."""
    print(f"{PREFIX}warning: {_one_line(message)}", file=sys.stderr, flush=True)


def _is_kafka_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("aiokafka", "kafka.")) or type(exc).__name__.startswith("Kafka")


def classify(exc: BaseException, settings: Settings | None) -> CliError:
    """Map a client library's exception to the error the user sees."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ConfigError):
        return UsageError(str(exc))
    broker = settings.kafka.broker if settings is not None else None
    if _is_kafka_error(exc):
        return Unavailable("Kafka", broker, exc)
    mod = type(exc).__module__ or ""
    if mod.startswith("asyncpg"):
        return Unavailable("PostgreSQL", None, exc)
    if mod.startswith(("aiohttp", "urllib")):
        return Unavailable("an HTTP service", None, exc)
    if isinstance(exc, (ConnectionError, TimeoutError)) or (
            isinstance(exc, OSError) and type(exc).__name__ == "gaierror"):
        return Unavailable("a dependency", None, exc)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError,
                        NotADirectoryError)):
        return IOFailure(_reason(exc))
    return CliError(f"internal error: {_reason(exc)} (run with --debug for the traceback)",
                    Exit.INTERNAL)


#: client libraries whose own log lines would repeat, as multi-line JSON, the one error
#: line the CLI prints (aiokafka logs every refused connection at ERROR)
CLIENT_LOGGERS = ("aiokafka", "kafka", "asyncio", "asyncpg", "aiohttp")


@contextlib.contextmanager
def quiet_clients() -> Iterator[None]:
    """Only CRITICAL log records of the client libraries while the block runs."""
    loggers = [logging.getLogger(n) for n in CLIENT_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line error format (exit 2, usage error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(int(Exit.USAGE), f"{PREFIX}error: {message} (see '{self.prog} --help')\n")


def _description(fn: Run) -> str | None:
    doc = fn.__doc__
    if not doc:
        mod = sys.modules.get(fn.__module__)
        doc = mod.__doc__ if mod is not None and mod.__name__ != __name__ else None
    return inspect.cleandoc(doc) if doc else None


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> Callable[[Run], Run]:
    def deco(fn: Run) -> Run:
        COMMANDS[name] = (help, add_args or (lambda p: None), fn)
        return fn

    return deco


# ---------------------------------------------------------------- worker
@command("worker", "run the Faust worker (all stages)")
def _worker(args: argparse.Namespace, settings: SettingsFactory) -> int:
    """Run one Faust worker with every stage: it joins the consumer group (the app id),
    serves the HTTP API, /metrics, /livez and /readyz, and stops cleanly on SIGTERM
    (stop consuming, flush, commit, close). The topics are created first if missing;
    an unreachable broker is reported at once (exit 3)."""
    from .streams.admin import ensure_topics_sync

    s = settings()
    from .streams import allocator

    # before the worker's threads (RocksDB, the Kafka consumer) and tables allocate
    allocator.configure(s.worker.malloc_mmap_threshold)
    with quiet_clients():  # an unreachable broker: the one error line says it
        ensure_topics_sync(s)
    # the stages' imports (seconds of CPU) only once the broker answered
    from faust import Worker

    from .streams import create_app

    app, ctx = create_app(s)
    from .streams import memory_report

    memory_report.start(ctx.tables, app=app)  # only with SRE_DEBUG_MEMORY_REPORT (benchmarks)
    worker = Worker(app, loglevel=s.worker.log_level, quiet=True, redirect_stdouts=False)
    # Worker handles SIGTERM/SIGINT: stop consuming, flush, commit, close
    worker.execute_from_commandline()
    return 0


# ---------------------------------------------------------------- schemas
def _schemas_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["export"], help="export: write one .json file per topic")
    p.add_argument("directory", type=Path, help="folder to write the schemas to (created)")


@command("schemas", "export the JSON Schema of every topic", _schemas_args)
def _schemas(args: argparse.Namespace, settings: SettingsFactory) -> int:
    """Write the JSON Schema of every topic's events (the contract for producers) into
    DIRECTORY, one file per topic, and print their paths."""
    from .schemas import export_json_schemas

    for path in export_json_schemas(args.directory):
        print(path)
    return 0


# ---------------------------------------------------------------- devstack
def _devstack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "up"], help="fetch: cache the Kafka jars; "
                   "up: start Kafka + PostgreSQL in the foreground until Ctrl-C")
    p.add_argument("--dir", type=Path, default=Path(".devstack"),
                   help="work folder of the local broker (default .devstack)")


@command("devstack", "local Apache Kafka (KRaft) + PostgreSQL for development", _devstack_args)
def _devstack(args: argparse.Namespace, settings: SettingsFactory) -> int:
    """A development stack without Docker: Apache Kafka in KRaft mode (jars from Maven
    Central, cached) and a throw-away PostgreSQL cluster. ``up`` prints their
    SRE_AGENT_* settings and runs until Ctrl-C or SIGTERM, then removes their data."""
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


def build_parser() -> Parser:
    """The whole CLI: every command with its description and option help."""
    _register_more()
    parser = Parser(prog="sre-agent", description=__doc__.splitlines()[0],
                    epilog="exit codes: 0 ok, 1 check failed, 2 usage or configuration, "
                           "3 dependency unreachable, 4 file error, 70 internal error, "
                           "130 interrupted")
    parser.add_argument("--version", action="version", version=f"sre-agent {__version__}",
                        help="print the version and exit")
    parser.add_argument("--config", type=Path, help="YAML config file (or SRE_AGENT_CONFIG)")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full traceback instead of one line")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for name, (help_, add_args, run) in sorted(COMMANDS.items()):
        add_args(sub.add_parser(name, help=help_, description=_description(run) or help_,
                                formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    parser = build_parser()
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
        return error(str(exc), Exit.USAGE)
    setup_logging(s.worker.log_level, json_format=s.worker.log_json,
                  framework_level=s.worker.framework_log_level)
    _help, _add, run = COMMANDS[args.cmd]
    try:
        if args.cmd == "worker":  # the worker's logs are its output
            return run(args, settings)
        with quiet_clients():
            return run(args, settings)
    except KeyboardInterrupt:
        return int(Exit.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        if args.debug:
            raise
        err = classify(exc, s)
        return error(str(err), err.code)


def _entry() -> Any:  # pragma: no cover
    sys.exit(main())
