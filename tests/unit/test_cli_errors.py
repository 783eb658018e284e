"""The CLI fails well (issue 17, item 6): one line on stderr, one prefix, distinct exit
codes, never a traceback for an unreachable dependency; ``--version``; help for every
command and option.

Real ``sre-agent`` processes against a Kafka and a PostgreSQL address where nothing
listens (a free local port): ``worker`` and ``baseline learn`` used to print tracebacks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sre_agent import __version__
from sre_agent.cli import CliError, Exit, build_parser, classify, main
from sre_agent.devstack import free_port

PREFIX = "sre-agent: error: "


#: what a one-shot command that only needs a client must not import before it reports an
#: unreachable dependency: River/SciPy (the detectors) and the stages' wiring cost seconds
#: of CPU (tens of seconds on a loaded machine); every command used to import them all
HEAVY = ("river", "scipy", "sre_agent.streams.app", "anthropic", "kubernetes_asyncio")

#: runs ``python -m sre_agent ARGS`` and, at exit, writes the names of the modules it
#: imported to the file named by SRE_TEST_MODULES_OUT
_RUN = ("import atexit, os, runpy, sys\n"
        "out = os.environ.pop('SRE_TEST_MODULES_OUT', None)\n"
        "if out:\n"
        "    atexit.register(lambda: open(out, 'w').write('\\n'.join(sorted(sys.modules))))\n"
        "sys.argv = ['sre-agent', *sys.argv[1:]]\n"
        "runpy.run_module('sre_agent', run_name='__main__', alter_sys=True)\n")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
    base.update(env)
    return subprocess.run([sys.executable, "-c", _RUN, *args], env=base,
                          capture_output=True, text=True, timeout=120, cwd="/")


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), proc.stderr
    return lines[0][len(PREFIX):]


@pytest.fixture(scope="module")
def nowhere() -> dict[str, str]:
    port = free_port()  # nothing listens there
    return {"SRE_AGENT_KAFKA__BROKER": f"kafka://127.0.0.1:{port}",
            "SRE_AGENT_POSTGRES__DSN": f"postgresql://agent:pw@127.0.0.1:{port}/agent"}


@pytest.mark.parametrize(("args", "what"), [
    (["worker"], "Kafka at kafka://127.0.0.1:"),
    (["baseline", "learn", "--days", "1"], "Kafka at kafka://127.0.0.1:"),
    (["publish", "deploy", "--app", "checkout"], "Kafka at kafka://127.0.0.1:"),
    (["audit", "verify"], "PostgreSQL"),
    (["audit", "tail", "--limit", "5"], "PostgreSQL"),
])
def test_an_unreachable_dependency_is_one_line_and_exit_3(
        nowhere: dict[str, str], args: list[str], what: str, tmp_path: Path) -> None:
    modules = tmp_path / "modules.txt"
    proc = cli(*args, **nowhere, SRE_TEST_MODULES_OUT=str(modules))
    msg = one_error(proc)
    assert proc.returncode == Exit.UNAVAILABLE == 3, (proc.returncode, msg)
    assert msg.startswith(f"cannot reach {what}"), msg
    assert proc.stdout == "", proc.stdout  # nothing half-done on stdout
    # failing fast: the error comes before the heavy imports (they took 30-60 s here on a
    # loaded machine; the check is on what was imported, not on a duration)
    loaded = set(modules.read_text().split())
    assert "sre_agent.cli" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize(("args", "env", "code", "text"), [
    (["baseline", "learn", "--days", "99"], {}, Exit.USAGE, "--days must be between 1 and 30"),
    (["no-such-command"], {}, Exit.USAGE, "invalid choice: 'no-such-command'"),
    (["audit", "--limit", "x", "tail"], {}, Exit.USAGE, "invalid int value: 'x'"),
    (["audit", "tail"], {}, Exit.USAGE, "postgres.dsn is not configured"),
    (["worker"], {"SRE_AGENT_KAFKA__PARTITIONS": "0"}, Exit.USAGE, "kafka.partitions"),
    (["backtest", "/no/such/input.csv", "/tmp/out.csv"], {}, Exit.IO, "does not exist"),
    (["rca", "offline", "/no/such/dir"], {}, Exit.USAGE, "rca offline:"),
])
def test_errors_have_one_prefix_and_distinct_codes(args: list[str], env: dict[str, str],
                                                   code: Exit, text: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process (fast; the unreachable-dependency cases above run real processes),
    # leaving the process's logging alone (setup_logging would bind the captured stderr)
    monkeypatch.setattr("sre_agent.cli.setup_logging", lambda *a, **k: None)
    try:
        rc = main(args, env=env)
    except SystemExit as exc:  # argparse
        rc = exc.code  # type: ignore[assignment]
    out = capsys.readouterr()
    msg = one_error(subprocess.CompletedProcess(args, rc, out.out, out.err))
    assert rc == code, (rc, msg)
    assert text in msg, msg


def test_exit_codes_are_distinct_and_an_unexpected_error_is_internal() -> None:
    assert len({int(c) for c in Exit}) == len(Exit)
    err = classify(RuntimeError("bug"), None)
    assert err.code == Exit.INTERNAL and "--debug" in str(err)
    assert classify(ConnectionRefusedError(111, "refused"), None).code == Exit.UNAVAILABLE
    assert classify(PermissionError(13, "denied"), None).code == Exit.IO
    assert classify(CliError("x", Exit.USAGE), None).code == Exit.USAGE


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"sre-agent {__version__}"


def _walk(parser: argparse.ArgumentParser, path: str, missing: list[str]) -> None:
    if not parser.description:
        missing.append(f"{path}: no description")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {c.dest for c in action._choices_actions if c.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    missing.append(f"{path} {name}: no summary")
                _walk(sub, f"{path} {name}", missing)
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path}: option {action.option_strings or action.dest} has no help")


def test_every_command_and_option_has_help() -> None:
    missing: list[str] = []
    _walk(build_parser(), "sre-agent", missing)
    assert not missing, "\n".join(missing)


def test_audit_tail_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "tail: print the newest rows as JSON lines" in text
    assert "--subject" in text and "--limit" in text and "Exit codes" in text
