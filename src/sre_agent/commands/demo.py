"""``sre-agent demo``: the README's main command.

Starts the real local stack (Apache Kafka, PostgreSQL, one agent worker),
replays half a day of a simulated trading platform and then two labelled
faults — a bad deploy of the API gateway and a bad deploy of the protected
wallet service — and prints, for each, the incident, its root-cause analysis,
the action plan and its approval state, what was executed and what it did to
the platform, who was notified, and the audit trail (whose hash chain is
verified in PostgreSQL); then every incident the agent raised (the warm-up
history's too) and the scorecard. It states the settings it changes, and prints
a console link that signs in with a token made for this run.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import Exit, SettingsFactory, UsageError, command, error

__all__ = ["DEFAULT", "DemoRun", "run_demo"]

DEFAULT = ["bad_deploy_error_surge", "protected_funds_fault"]
#: the simulated on-call approves plans that need a human after this many sample-seconds
APPROVE_AFTER = 300.0
#: clean sample time before each scenario and at the end
GAP = 20 * 60.0


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help=f"scenarios to replay (default: {', '.join(DEFAULT)}); "
                        "see `sre-agent eval --list`")
    p.add_argument("--history-hours", type=float, default=12.0,
                   help="clean history replayed first (default 12)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--broker", help="use this running broker (kafka://host:port)")
    p.add_argument("--no-postgres", action="store_true", help="do not start PostgreSQL")
    p.add_argument("--dir", type=Path, default=Path(".devstack/demo"), help="work folder")
    p.add_argument("--keep", action="store_true",
                   help="keep the stack running afterwards (web console) until Ctrl-C")


async def _verify_audit(dsn: str) -> str:
    from ..sinks.audit import AuditStore

    store = AuditStore(dsn, min_size=1, max_size=1)
    try:
        await store.setup()
        return str(await store.verify())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal for the demo
        return f"could not be read: {exc}"
    finally:
        await store.close()


def _line(char: str = "=") -> str:
    return char * 78


@dataclass
class DemoRun:
    """What one demo run saw (the test of the demo reads it)."""

    record: Any
    card: dict[str, Any]
    mails: list[Any]
    text: list[str] = field(default_factory=list)
    console_url: str = ""
    settings: dict[str, str] = field(default_factory=dict)


def settings_lines(env: dict[str, str], protected: list[str], mail_to: str | None) -> list[str]:
    """The settings the demo runs the agent with, in words (issue 16: an honest demo).

    >>> text = "\\n".join(settings_lines({"SRE_AGENT_ACTIONS__AUTO_REMEDIATION": "true"},
    ...                                  ["wallet*"], None))
    >>> "actions.dry_run = true (the default)" in text, "auto_remediation = true" in text
    (True, True)
    """
    import textwrap

    dry = env.get("SRE_AGENT_ACTIONS__DRY_RUN", "true") == "true"
    auto = env.get("SRE_AGENT_ACTIONS__AUTO_REMEDIATION", "false") == "true"
    items = [
        f"actions.dry_run = {str(dry).lower()}"
        + (" (the default): the agent calls no cluster API. Its executor has no Kubernetes "
           "back-end here, so it reports every action as 'failed: no back-end enabled'. The "
           "simulated platform stands in for the cluster: it applies each sre-action the "
           "agent authorised (policy, approvals, signature) after the action's usual delay, "
           "and the platform's own health says whether that healed it."
           if dry else ": actions are executed for real"),
        f"actions.auto_remediation = {str(auto).lower()}"
        + (" (the default is false; turned on for the demo): LOW-risk plans run without a "
           "human" if auto else ": every plan waits for a human"),
        f"approvals: plans that need a human are approved by a simulated on-call "
        f"{APPROVE_AFTER / 60:.0f} sample-minutes after they appear (its votes are signed "
        "with this run's key); it never judges a plan",
        f"actions.protected = {', '.join(protected)}: never executed automatically; their "
        "plans are BLOCKED (diagnosis only, a human acts outside the agent)",
        "notify.sinks: every incident is e-mailed to "
        + (f"{mail_to} through a local SMTP server the demo runs" if mail_to else
           "nobody: no SMTP server library (aiosmtpd, in the dev extra) is installed"),
    ]
    out = ["settings the agent runs with:"]
    for item in items:
        out += textwrap.wrap(item, width=100, initial_indent="  - ", subsequent_indent="    ")
    return out


def run_demo(scenario_names: list[str], *, history_hours: float = 12.0, seed: int = 7,
             epoch: str = "now",
             workdir: Path, protected: list[str], broker_url: str | None = None,
             postgres: bool = True, pg_dsn: str | None = None,
             say: Callable[[str], None] = print, out: Callable[[str], None] = print,
             keep: Callable[[DemoRun], None] | None = None) -> DemoRun:
    """Start the stack, replay, tell what happened; the stack is stopped on return.

    ``epoch``: sample time of the first step, as ``sre-agent eval --epoch`` ("now": the
    run ends about now, so the console shows recent incidents; tests fix it).
    """
    from ..devstack import free_port
    from ..sim import Platform, Topology, plan, score
    from ..sim import inbox as mailbox
    from ..sim.replay import Approver, Replayer
    from ..sim.report import render
    from ..sim.stack import LocalStack, agent_env
    from ..sim.story import incident_ledger, tell
    from .eval import epoch_of, select

    scenarios = select(scenario_names)
    topo = Topology.default()
    history = history_hours * 3600.0
    # sample time ends about now, so the console shows "recent" incidents
    start = epoch_of(epoch, plan(scenarios, 0.0, history, GAP)[-1].end)
    platform = Platform(seed=seed, start=start, topology=topo)
    segments = plan(scenarios, platform.t, history, GAP)
    port = free_port()
    token = secrets.token_urlsafe(18)
    console = f"http://127.0.0.1:{port}/console"
    replayer: list[Any] = []  # the sample clock of mails: the replayer's, once it exists
    box = mailbox.Inbox(lambda: replayer[0].clock if replayer else platform.t) \
        if mailbox.available() else None
    env = {
        # stated, not silently inherited: the defaults, except auto-remediation
        "SRE_AGENT_ACTIONS__DRY_RUN": "true",
        "SRE_AGENT_API__TOKENS": f'{{"{token}": "operator"}}',
        "SRE_AGENT_NOTIFY__CONSOLE_URL": console + "#/incident/{incident_id}",
    }
    if box is not None:
        import json

        env["SRE_AGENT_NOTIFY__SINKS"] = json.dumps([box.sink()])
    full_env = {**agent_env(topo), **env}
    run = DemoRun(record=None, card={}, mails=[], console_url=f"{console}#token={token}",
                  settings={k: v for k, v in full_env.items() if "KEY" not in k
                            and "TOKENS" not in k})

    def show(line: str = "") -> None:
        run.text.append(line)
        out(line)

    for line in settings_lines(full_env, protected, box.address if box else None):
        show(line)
    stack = LocalStack(workdir, broker_url=broker_url, postgres=postgres, pg_dsn=pg_dsn,
                       extra_env=env, port=port)
    if box is not None:
        box.__enter__()
    try:
        stack.start(topo, say=say)
        say(f"agent up: status {stack.status_url}; services: "
            f"{', '.join(c.name for c in topo if c.kind == 'service')} + postgres, redis, kafka")
        say(f"console (operator token made for this run; open it while the demo runs, or "
            f"use --keep): {run.console_url}")
        say(f"replaying {history_hours:.0f} h of normal traffic so baselines can learn (the "
            f"agent is live from the first sample: whatever it raises is reported below), "
            f"then: {', '.join(s.name for s in scenarios)}")
        rep = Replayer(stack.bootstrap, stack.prefix, stack.status_url, platform, segments,
                       approver=Approver(delay=APPROVE_AFTER), protected=protected,
                       progress=say)
        replayer.append(rep)
        record = asyncio.run(rep.run())
        if not stack.alive():
            raise RuntimeError(f"the worker died during the demo:\n{stack.tail()}")
        run.record, run.card = record, score(record)
        run.mails = box.mails if box is not None else []
        for gt, row in zip(record.truths, run.card["scenarios"], strict=True):
            show()
            for line in tell(record, gt, row, mails=run.mails).splitlines():
                show(line)
        show()
        for line in incident_ledger(record, run.mails).splitlines():
            show(line)
        show()
        show(_line("-"))
        for line in render(run.card).splitlines():
            show(line)
        if stack.pg_dsn:
            show(f"\naudit log in PostgreSQL (hash chain): "
                 f"{asyncio.run(_verify_audit(stack.pg_dsn))}")
        show(f"worker log {stack.log_path}")
        if keep is not None:
            keep(run)
        return run
    finally:
        stack.stop()
        if box is not None:
            box.__exit__()


@command("demo", "start the local stack, replay fault scenarios, show incident, RCA, plan, "
         "approval, notifications and audit trail", _args)
def _demo(args: argparse.Namespace, settings: SettingsFactory) -> int:
    from .eval import select

    try:
        select(args.scenario or DEFAULT)
    except ValueError as exc:
        raise UsageError(f"demo: {exc}") from None
    t_start = time.monotonic()
    print(_line())
    print("SRE Agent demo: a simulated crypto exchange, real Kafka, real agent")
    print(_line())

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:5.0f}s] {msg}", flush=True)

    def keep(run: DemoRun) -> None:
        print(f"\nstack still running; console: {run.console_url} (Ctrl-C to stop)", flush=True)
        _wait_for_ctrl_c()

    from ..devstack import DevstackError

    try:
        run_demo(args.scenario or DEFAULT, history_hours=args.history_hours, seed=args.seed,
                 workdir=args.dir.resolve(), protected=list(settings().actions.protected),
                 broker_url=args.broker, postgres=not args.no_postgres, say=say,
                 keep=keep if args.keep else None)
    except (DevstackError, RuntimeError) as exc:
        return error(f"demo: could not run: {exc}", Exit.FAILED)
    print(f"demo finished in {time.monotonic() - t_start:.0f} s; "
          "full scorecard over every scenario: sre-agent eval")
    return 0


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
