"""Issue 16, deliverable 2: silences made at run time are kept durably.

A silence is answered ``201`` only once the broker has it on the compacted ``silences``
topic (keyed by silence id, so the latest state of each silence is what stays). The
worker is SIGKILLed right after the answers; after the restart the active silence is
listed and still drops matching signals in the correlator, and the one expired early
stays expired (not resurrected by its first record).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.api_support import api_env, call
from tests.integration.test_oncall import anomaly, post_json

pytestmark = pytest.mark.integration


async def _cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        res = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        for _code, _msg, _type, _name, entries in res[0].resources:
            for entry in entries:
                if entry[0] == "cleanup.policy":
                    return str(entry[1])
        return ""
    finally:
        await admin.close()


async def test_silences_survive_a_kill(worker_factory, kafka_broker, kafka_io, wait_for) -> None:
    # the killed worker's session must expire before its restart gets the partitions
    # back: 60 s by default, most of this test's time
    w = worker_factory(extra_env=api_env(SRE_AGENT_CORRELATION__TICK_INTERVAL="1",
                                         SRE_AGENT_WORKER__SESSION_TIMEOUT="10",
                                         SRE_AGENT_WORKER__HEARTBEAT_INTERVAL="1")).start()
    base, pfx = w.url, w.env["SRE_AGENT_KAFKA__TOPIC_PREFIX"]
    try:
        assert await _cleanup_policy(kafka_broker.bootstrap, pfx + "silences") == "compact"
        code, kept, _ = post_json(base, "/api/silences", {
            "matchers": {"service": "checkout"}, "duration_minutes": 60,
            "comment": "maintenance of the checkout database"})
        assert code == 201 and kept["active"]
        code, gone, _ = post_json(base, "/api/silences", {
            "matchers": {"service": "search"}, "duration_minutes": 60, "comment": "reindex"})
        assert code == 201
        code, _, _ = post_json(base, f"/api/silences/{gone['silence_id']}", {}, method="DELETE")
        assert code == 200
        w.kill()  # right after the answers

        w.start(timeout=120)

        def listed() -> dict[str, Any]:
            items = call(base, "/api/silences?state=all", token="tok-viewer")[1]["items"]
            return {s["silence_id"]: s for s in items}

        def both() -> dict[str, Any] | None:
            got = listed()
            return got if {kept["silence_id"], gone["silence_id"]} <= set(got) else None

        got = await wait_for(both, timeout=60)
        assert got[kept["silence_id"]]["active"] and got[kept["silence_id"]]["author"] == "api:otto"
        assert got[gone["silence_id"]]["state"] == "expired" and not got[gone["silence_id"]]["active"]
        active = [s["silence_id"] for s in call(base, "/api/silences", token="tok-viewer")[1]["items"]]
        assert active == [kept["silence_id"]]

        # still applied by the correlator after the restart
        before = w.get_json("/api/correlation/stats")["silenced"]
        await kafka_io.send(pfx + "anomalies", anomaly("checkout", "latency_ms", datetime.now(UTC)))
        await wait_for(lambda: w.get_json("/api/correlation/stats")["silenced"] > before,
                       timeout=40)
        assert not call(base, "/api/incidents?q=checkout", token="tok-viewer")[1]["items"]
    except BaseException:
        print(w.tail(12000))
        raise
    finally:
        w.stop()
