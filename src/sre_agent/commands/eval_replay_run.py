"""The stack around ``sre-agent eval --replay``: one broker, a fresh worker per case."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from .eval_replay import (CaseOutcome, find_cases, render, replay_case, select_cases,
                          summarise)
from .rca_offline import InputError

__all__ = ["run_replay"]


def _say(text: str) -> None:
    print(text, flush=True)  # progress of a long run, also when piped to a file


def run_replay(args: argparse.Namespace, say: Any = _say) -> int:
    from ..devstack import DevstackError, KafkaBroker, default_cache_dir
    from ..sim.stack import LocalStack
    from ..sim.topology import Topology

    try:
        cases = select_cases(find_cases(args.replay), 0 if args.all else args.limit, args.only)
    except InputError as exc:
        print(f"sre-agent eval: {exc}", file=sys.stderr)
        return 2
    if not cases:
        print("sre-agent eval: no case matches", file=sys.stderr)
        return 2
    work = args.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    say(f"eval --replay: {len(cases)} case(s) from {args.replay}")
    broker = None
    url = args.broker
    outcomes: list[CaseOutcome] = []
    wall = time.monotonic()
    try:
        if url is None:
            say("starting Apache Kafka (KRaft) ...")
            broker = KafkaBroker(work / "kafka", default_cache_dir()).start()
            url = broker.url
        for i, case in enumerate(cases, 1):
            edges = [list(e) for e in _edges(case)]
            env = {"SRE_AGENT_CORRELATION__EDGES": json.dumps(edges), **_agent_env(args)}
            stack = LocalStack(work, broker_url=url, postgres=False, extra_env=env,
                               prefix=f"replay-{uuid.uuid4().hex[:8]}.")
            try:
                stack.start(Topology(components={}), say=lambda m: None)
                out = asyncio.run(replay_case(case, stack.bootstrap, stack.prefix,
                                              stack.status_url))
                if not stack.alive():
                    out.error = "the worker died during the replay"
            except (DevstackError, RuntimeError, InputError) as exc:
                out = CaseOutcome(case.name, "?", "?", "?", error=str(exc)[:300])
            finally:
                stack.stop()
            outcomes.append(out)
            rank = out.rank
            say(f"  [{i}/{len(cases)}] {case.name}: "
                + (f"ERROR {out.error}" if out.error and not out.ranked else
                   f"truth {out.truth} rank {rank if rank else '-'} "
                   f"(top {', '.join(out.ranked[:3])}; {out.rca_results} result(s), "
                   f"{out.seconds:.0f} s)"))
    except DevstackError as exc:
        print(f"sre-agent eval: {exc}", file=sys.stderr)
        return 1
    finally:
        if broker is not None:
            broker.stop()
    summary = summarise(outcomes)
    say("")
    render(summary, say)
    failed = [o for o in outcomes if o.error]
    say(f"failed cases (counted as misses): {len(failed)} of {len(outcomes)}; "
        f"wall time {time.monotonic() - wall:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({
            "command": "sre-agent eval " + " ".join(sys.argv[2:]),
            "summary": summary, "cases": [asdict(o) | {"rank": o.rank} for o in outcomes]},
            option=orjson.OPT_INDENT_2))
        say(f"results written to {args.json}")
    return 0


def _edges(case: Path) -> list[tuple[str, str]]:
    from .rca_offline import _rows

    return [(a, b) for _, (a, b) in _rows(case / "graph.csv", ["caller", "callee"])]


def _agent_env(args: argparse.Namespace) -> dict[str, str]:
    from .eval import agent_env_of

    return agent_env_of(args.agent_env)
