"""``sre-agent eval``: the labelled scenarios through the real pipeline, scored.

Starts a real Apache Kafka broker (or uses ``--broker``), PostgreSQL and one
``sre-agent worker``; replays days of history and then each scenario in
accelerated sample time, closing the loop over ``sre-actions``; prints the
scorecard per scenario and overall against the seeds' targets, and writes it
as JSON with ``--json``. ``--replay DIR`` instead replays recorded real
incidents through the streaming path and scores the RCA
(:mod:`.eval_replay`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ..cli import Exit, SettingsFactory, UsageError, command, error

__all__: list[str] = []


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="run only these scenarios (repeat, or comma-separate); see --list")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the scorecard as JSON")
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="also write everything observed (truths, outputs, actions) as JSON")
    p.add_argument("--rescore", type=Path, metavar="FILE",
                   help="score a file written by --record instead of running")
    p.add_argument("--detail", action="store_true",
                   help="also print each false alarm (the signals it opened on) and each RCA "
                        "miss (the incident and the ranked hypotheses)")
    p.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    p.add_argument("--history-hours", type=float, default=72.0,
                   help="clean history replayed first so baselines can learn (default 72)")
    p.add_argument("--gap-minutes", type=float, default=60.0,
                   help="clean time before each scenario and at the end (default 60)")
    p.add_argument("--step", type=float, default=60.0, help="sample interval, seconds")
    p.add_argument("--epoch", default="fixed",
                   help="sample time of the first step: 'fixed' (2025-11-03T00:00Z, "
                        "reproducible), 'now' (the run ends about now), or an ISO time")
    p.add_argument("--approve-after", type=float, default=5.0, metavar="MIN",
                   help="a simulated on-call approves plans that need humans after MIN "
                        "sample-minutes (0: nobody approves)")
    p.add_argument("--agent-env", action="append", default=[], metavar="SRE_AGENT_X=V",
                   help="extra setting for the worker (repeat), e.g. "
                        "SRE_AGENT_CORRELATION__IDLE_RESOLVE=60")
    p.add_argument("--broker", help="use this running broker (kafka://host:port)")
    p.add_argument("--no-postgres", action="store_true", help="do not start PostgreSQL")
    p.add_argument("--dir", type=Path, default=Path(".devstack/eval"), help="work folder")
    r = p.add_argument_group("real incidents through the streaming path (--replay)")
    r.add_argument("--replay", type=Path, metavar="DIR",
                   help="replay recorded incidents (a case folder in the 'rca offline' format "
                        "with truth.json, or a folder of them, e.g. the Nezha dev set) through "
                        "Kafka into a fresh worker each, and score the streaming RCA")
    r.add_argument("--limit", type=int, default=12, metavar="N",
                   help="replay N cases spread over the set (default 12; see --all)")
    r.add_argument("--all", action="store_true", help="replay every case (about a minute each)")
    r.add_argument("--only", metavar="SUBSTR", help="only cases whose folder name contains this")


def select(names: list[str] | None) -> list[Any]:
    """Scenarios by name (comma lists allowed), in library order; ValueError if unknown."""
    from ..sim import SCENARIOS

    if not names:
        return list(SCENARIOS.values())
    wanted = [n.strip() for arg in names for n in arg.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; "
                         f"known: {', '.join(SCENARIOS)}")
    return [s for n, s in SCENARIOS.items() if n in wanted]


def epoch_of(value: str, sample_seconds: float) -> float:
    """Start of sample time: fixed, ending about now (whole minutes), or an ISO time."""
    from ..sim import DEFAULT_EPOCH

    if value == "fixed":
        return DEFAULT_EPOCH
    if value == "now":
        return float(int((time.time() - sample_seconds) // 60) * 60)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--epoch: expected 'fixed', 'now' or an ISO time, not {value!r}") \
            from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def agent_env_of(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs for the worker; only ``SRE_AGENT_*`` keys."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("SRE_AGENT_"):
            raise ValueError(f"--agent-env: expected SRE_AGENT_<SECTION>__<FIELD>=value, "
                             f"not {item!r}")
        out[key] = value
    return out


def cluster_env(port: int) -> dict[str, str]:
    """Worker settings to act on the simulated cluster at ``port`` (for real, not dry-run).

    Verification polls its signal every 0.05 s: the replay runs sample time ~800x
    faster than the wall clock, and the default 1 s would be ~13 sample-minutes.
    """
    return {"SRE_AGENT_KUBERNETES__SIMULATOR_URL": f"http://127.0.0.1:{port}",
            "SRE_AGENT_ACTIONS__DRY_RUN": "false",
            "SRE_AGENT_ACTIONS__VERIFY_POLL_SECONDS": "0.05"}


def run_eval(args: argparse.Namespace, protected: list[str],
             say: Any = print) -> tuple[dict[str, Any], Any]:
    """Start the stack, replay, score; return the scorecard and the run record."""
    from ..sim import Platform, Topology, plan, score
    from ..sim.replay import Approver, Replayer
    from ..sim.stack import LocalStack

    scenarios = select(args.scenario)
    topo = Topology.default()
    history, gap = args.history_hours * 3600.0, args.gap_minutes * 60.0
    total = plan(scenarios, 0.0, history, gap)[-1].end
    platform = Platform(seed=args.seed, start=epoch_of(args.epoch, total), step=args.step,
                        topology=topo)
    segments = plan(scenarios, platform.t, history, gap)
    platform_start = platform.t
    sample_h = (segments[-1].end - segments[0].start) / 3600.0
    say(f"eval: {len(scenarios)} scenario(s), {sample_h:.0f} h of sample time "
        f"(seed {args.seed}, {args.history_hours:.0f} h history)")
    from ..devstack import free_port

    # the worker's executor acts on the simulated platform through its cluster API
    # (served by the replay): what it executes is applied there, and only that
    cluster_port = free_port()
    stack = LocalStack(args.dir.resolve(), broker_url=args.broker,
                       postgres=not args.no_postgres,
                       extra_env={**cluster_env(cluster_port), **agent_env_of(args.agent_env)})
    wall = time.monotonic()
    try:
        stack.start(topo, say=say)
        rep = Replayer(stack.bootstrap, stack.prefix, stack.status_url, platform, segments,
                       approver=Approver(delay=args.approve_after * 60.0,
                                         enabled=args.approve_after > 0),
                       protected=protected, progress=lambda m: say("  " + m),
                       cluster_port=cluster_port)
        record = asyncio.run(rep.run())
        if not stack.alive():
            raise RuntimeError(f"the worker died during the eval:\n{stack.tail()}")
    finally:
        stack.stop()
    record.info.update({
        "epoch": datetime.fromtimestamp(platform_start, UTC).isoformat(),
        "scenarios": [s.name for s in scenarios], "history_hours": args.history_hours,
        "gap_minutes": args.gap_minutes, "approve_after_minutes": args.approve_after,
        "agent_env": agent_env_of(args.agent_env),
        "sample_hours": round(sample_h, 1), "total_wall_seconds": round(time.monotonic() - wall),
        "command": "sre-agent eval " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "",
    })
    return score(record), record


@command("eval", "replay labelled fault scenarios through the real pipeline; print the "
         "scorecard against the seeds' targets", _args)
def _eval(args: argparse.Namespace, settings: SettingsFactory) -> int:
    from ..sim import SCENARIOS
    from ..sim.report import render

    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:26} {s.duration / 60:5.0f} min  {s.title}")
        return 0
    try:
        select(args.scenario)
        epoch_of(args.epoch, 0.0)
        agent_env_of(args.agent_env)
    except ValueError as exc:
        raise UsageError(f"eval: {exc}") from None
    if args.replay is not None:
        from .eval_replay_run import run_replay

        return run_replay(args)
    from ..sim import RunRecord, score

    if args.rescore:
        record = RunRecord.from_dict(orjson.loads(args.rescore.read_bytes()))
        card = score(record)
    else:
        from ..devstack import DevstackError

        try:
            card, record = run_eval(args, list(settings().actions.protected))
        except (DevstackError, RuntimeError) as exc:
            return error(f"eval: {exc}", Exit.FAILED)
    print()
    print(render(card))
    if args.detail:
        from ..sim.detail import details, render_details

        print()
        print(render_details(details(record), t0=record.scored_from))
    r = card["run"]
    if "total_wall_seconds" in r:
        print(f"\nwall time {r['total_wall_seconds']} s (replay {r['wall_seconds']} s); "
              f"inputs rejected to DLQ: {sum(r['dlq'].values())}; "
              f"lockstep timeouts: {r['settle_timeouts']}")
    if args.record and not args.rescore:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_bytes(orjson.dumps(record.to_dict()))
        print(f"run record written to {args.record}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(card, option=orjson.OPT_INDENT_2))
        print(f"scorecard written to {args.json}")
    return 0
