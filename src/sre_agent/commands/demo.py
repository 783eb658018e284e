"""``sre-agent demo``: the README's main command.

Starts the real local stack (Apache Kafka, PostgreSQL, one agent worker),
replays half a day of a simulated trading platform and then two labelled
faults — a bad deploy of the API gateway and a bad deploy of the protected
wallet service — and prints, for each, the incident, its root-cause analysis,
the action plan and its approval state, what was executed and what it did to
the platform, and the audit trail (whose hash chain is verified in PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from pathlib import Path

from ..cli import Exit, SettingsFactory, UsageError, command, error

__all__: list[str] = []

DEFAULT = ["bad_deploy_error_surge", "protected_funds_fault"]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help=f"scenarios to replay (default: {', '.join(DEFAULT)}); "
                        "see `sre-agent eval --list`")
    p.add_argument("--history-hours", type=float, default=12.0,
                   help="clean history replayed first (default 12)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
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


@command("demo", "start the local stack, replay fault scenarios, show incident, RCA, plan, "
         "approval and audit trail", _args)
def _demo(args: argparse.Namespace, settings: SettingsFactory) -> int:
    from ..sim import Platform, Topology, plan, score
    from ..sim.replay import Approver, Replayer
    from ..sim.report import render
    from ..sim.stack import LocalStack
    from ..sim.story import tell
    from .eval import epoch_of, select

    try:
        scenarios = select(args.scenario or DEFAULT)
    except ValueError as exc:
        raise UsageError(f"demo: {exc}") from None
    t_start = time.monotonic()
    print(_line())
    print("SRE Agent demo: a simulated crypto exchange, real Kafka, real agent")
    print(_line())
    topo = Topology.default()
    history, gap = args.history_hours * 3600.0, 20 * 60.0
    # sample time ends about now, so the console shows "recent" incidents
    start = epoch_of("now", plan(scenarios, 0.0, history, gap)[-1].end)
    platform = Platform(seed=args.seed, start=start, topology=topo)
    segments = plan(scenarios, platform.t, history, gap)
    stack = LocalStack(args.dir.resolve(), postgres=not args.no_postgres)

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:5.0f}s] {msg}", flush=True)

    from ..devstack import DevstackError

    try:
        try:
            stack.start(topo, say=say)
        except (DevstackError, RuntimeError) as exc:
            return error(f"demo: could not start the local stack: {exc}", Exit.FAILED)
        say(f"agent up: status {stack.status_url}; services: "
            f"{', '.join(c.name for c in topo if c.kind == 'service')} + postgres, redis, kafka")
        say(f"replaying {args.history_hours:.0f} h of normal traffic so baselines can learn, "
            f"then: {', '.join(s.name for s in scenarios)}")
        rep = Replayer(stack.bootstrap, stack.prefix, stack.status_url, platform, segments,
                       approver=Approver(delay=300.0),
                       protected=list(settings().actions.protected), progress=say)
        record = asyncio.run(rep.run())
        card = score(record)
        for gt, row in zip(record.truths, card["scenarios"], strict=True):
            print()
            print(tell(record, gt, row))
        print()
        print(_line("-"))
        print(render(card))
        if stack.pg_dsn:
            print(f"\naudit log in PostgreSQL (hash chain): {asyncio.run(_verify_audit(stack.pg_dsn))}")
        print("\nplans needing approval were approved by a simulated on-call after 5 sample-"
              "minutes; protected services are never executed automatically.")
        print(f"demo finished in {time.monotonic() - t_start:.0f} s; worker log {stack.log_path}")
        print("full scorecard over every scenario: sre-agent eval")
        if args.keep:
            print(f"\nstack still running: {stack.status_url} (Ctrl-C to stop)", flush=True)
            _wait_for_ctrl_c()
        return 0
    finally:
        stack.stop()


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass

