"""A recorded incident through the streaming path (what ``sre-agent eval --replay`` does):
metrics and logs through Kafka into a real worker, an alert at the start, and the streaming
RCA names the same root as ``sre-agent rca offline`` on the same files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sre_agent.commands.eval_replay import replay_case
from sre_agent.commands.rca_offline import load_dir
from sre_agent.processors.rca_offline import analyze_offline

pytestmark = pytest.mark.integration

START = 1_700_003_640
EDGES = [("web", "api"), ("api", "db"), ("api", "cache")]


def write_case(d: Path) -> Path:
    rng = random.Random(5)
    d.mkdir(parents=True, exist_ok=True)
    (d / "graph.csv").write_text("caller,callee\n" + "".join(f"{a},{b}\n" for a, b in EDGES))
    rows = ["timestamp,service,metric,value"]
    logs = ["timestamp,service,message"]
    for i in range(70):
        t = START - 3600 + 60 * i + 7
        after = t >= START
        for s, lat in (("web", 0.2), ("api", 0.08), ("db", 0.01), ("cache", 0.002)):
            v = lat * (1 + 0.05 * rng.gauss(0, 1))
            if after and s == "db":
                v *= 12
            elif after and s in ("api", "web"):
                v += 0.1
            rows.append(f"{t},{s},latency_p90,{v:.6f}")
            rows.append(f"{t},{s},cpu,{20 + rng.gauss(0, 1):.4f}")
            logs.append(f"{t + 1}.250,{s},INFO {s} served request {i}")
        if after:
            logs.append(f"{t + 2}.500,db,ERROR lock wait timeout exceeded on table orders")
    (d / "metrics.csv").write_text("\n".join(rows) + "\n")
    (d / "logs.csv").write_text("\n".join(logs) + "\n")
    (d / "incident.json").write_text(json.dumps(
        {"start": START, "symptom": {"service": "web", "metric": "latency_p90"}}))
    (d / "truth.json").write_text(json.dumps(
        {"root_cause_service": "db", "fault_type": "lock", "system": "generated"}))
    return d


async def test_streaming_rca_of_a_replayed_case_matches_offline(tmp_path: Path, worker_factory,
                                                                 kafka_io) -> None:
    case = write_case(tmp_path / "case")
    offline = [c["service"] for c in analyze_offline(**load_dir(case))["candidates"]]
    assert offline[0] == "db"
    w = worker_factory(extra_env={
        "SRE_AGENT_CORRELATION__EDGES": json.dumps([list(e) for e in EDGES])}).start()
    pfx = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    try:
        out = await replay_case(case, kafka_io.bootstrap, pfx, w.url + "/status", timeout=240)
    except BaseException:
        print(w.tail(20000))
        raise
    finally:
        w.stop()
    assert out.error is None, out
    assert out.rank == 1 and out.ranked[0] == "db", out
    assert out.rca_results >= 1
