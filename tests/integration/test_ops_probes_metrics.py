"""Probes and /metrics of a real worker on the real broker (issue 17, items 2 and 5).

- ``/livez`` and ``/readyz`` answer 200 on a healthy worker; with a stage blocked
  (the audit sink retrying an unreachable PostgreSQL while more records wait)
  ``/readyz`` answers 503 naming the stage, ``/livez`` stays 200, and ``/metrics``
  says the same (``sre_agent_ready``, ``sre_agent_stage_stalled``).
- ``/metrics`` follows Prometheus conventions: no label value carries a Python
  repr or a path (``stream_events_total`` used to be labelled with the task
  repr), stages are agent names, latencies are histograms (no ``*_avg`` gauge),
  ``sre_agent_build_info`` exists, ``actions_total`` has action/dry_run/outcome.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sre_agent import __version__
from sre_agent.devstack import free_port
from sre_agent.schemas import AuditRecord
from tests.api_support import call

pytestmark = pytest.mark.integration

LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]*$")


def families(base: str) -> dict[str, Any]:
    st, _, text = call(base, "/metrics")
    assert st == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], name: str, **labels: str) -> float | None:
    for fam in fams.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_metrics_follow_prometheus_conventions(worker_factory, kafka_io, wait_for) -> None:
    w = worker_factory().start()
    pfx, base = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"], w.url
    for i in range(5):  # no PostgreSQL: the audit sink takes and acks them
        await kafka_io.send(pfx + "audit", AuditRecord(actor="t", action="probe", subject=f"s{i}"))

    def processed() -> Any:
        fams = families(base)
        n = sample(fams, "sre_agent_stream_events_total", stage="audit-sink")
        return fams if n and n >= 5 else None

    fams = await wait_for(processed, timeout=60)
    st, live, _ = call(base, "/livez")
    assert (st, live) == (200, {"live": True, "reasons": []})
    st, ready, _ = call(base, "/readyz")
    assert st == 200 and ready["ready"] is True and ready["broker"]["connected"] is True, ready
    assert sample(fams, "sre_agent_ready") == 1.0

    # bounded labels: no repr, no path, in any family
    for fam in fams.values():
        for s in fam.samples:
            for k, v in s.labels.items():
                assert LABEL_VALUE.match(v), (s.name, k, v)
    stages = {s.labels["stage"] for s in fams["sre_agent_stream_events"].samples}
    assert "audit-sink" in stages and all(LABEL_VALUE.match(x) and "Task" not in x
                                          for x in stages), stages
    # histograms, not averages
    assert not [n for n in fams if n.endswith("_avg")], [n for n in fams if n.endswith("_avg")]
    for name in ("sre_agent_event_runtime_seconds", "sre_agent_commit_latency_seconds",
                 "sre_agent_send_latency_seconds", "sre_agent_stage_latency_seconds"):
        assert fams[name].type == "histogram", name
    assert (sample(fams, "sre_agent_event_runtime_seconds_count") or 0) >= 5
    assert sample(fams, "sre_agent_event_runtime_seconds_bucket", le="+Inf") == \
        sample(fams, "sre_agent_event_runtime_seconds_count")
    # build info, actions with their labels (declared even before the first action)
    assert sample(fams, "sre_agent_build_info", version=__version__) == 1.0
    assert fams["sre_agent_actions"].type == "counter"
    assert fams["sre_agent_circuit_breaker_open"].type == "gauge"
    assert sample(fams, "sre_agent_audit_pending") == 0.0
    assert w.stop() == 0, w.tail()


async def test_a_stalled_stage_makes_the_worker_unready_not_dead(worker_factory, kafka_io,
                                                                 wait_for) -> None:
    dead_db = f"postgresql://agent:pw@127.0.0.1:{free_port()}/agent"  # nothing listens
    w = worker_factory(extra_env={"SRE_AGENT_POSTGRES__DSN": dead_db,
                                  "SRE_AGENT_WORKER__STALL_SECONDS": "2"}).start()
    pfx, base = w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"], w.url
    st, ready, _ = call(base, "/readyz")
    assert st == 200, ready
    for i in range(4):  # the first blocks the sink (retrying), the others wait behind it
        await kafka_io.send(pfx + "audit", AuditRecord(actor="t", action="stall", subject=f"s{i}"))

    def unready() -> Any:
        st, body, _ = call(base, "/readyz")
        return body if st == 503 and "audit-sink" in body["stalled"] else None

    body = await wait_for(unready, timeout=60)
    assert any(r.startswith("stage audit-sink stalled") for r in body["reasons"]), body
    assert body["broker"]["connected"] is True and body["recovery"]["ready"] is True
    st, live, _ = call(base, "/livez")
    assert (st, live["live"]) == (200, True)
    fams = families(base)
    assert sample(fams, "sre_agent_ready") == 0.0
    assert sample(fams, "sre_agent_stage_stalled", stage="audit-sink") == 1.0
    assert sample(fams, "sre_agent_stage_stalled", stage="rca") == 0.0
    assert sample(fams, "sre_agent_audit_pending") == 1.0
    assert w.stop() == 0, w.tail()
