"""The rebalance fixes in :mod:`sre_agent.streams.faust_fixes`, each on its own.

Found by the chaos test ``test_second_worker_joins_then_first_is_killed``: on a
loaded machine Faust's assignment callback (opening every table's stores, a full
garbage collection per table) outlasted the session timeout; aiokafka sent no
heartbeat meanwhile, so the coordinator expelled the live member, and every
following assignment was expelled the same way (a rebalance storm).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from sre_agent.streams import faust_fixes
from tests.conftest import unique

SESSION_S = 6.0  # the broker's group.min.session.timeout.ms


@pytest.mark.integration
async def test_member_slower_to_set_up_than_the_session_timeout_stays_in_the_group(
        kafka_broker: Any) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    faust_fixes.apply()
    topic, group = unique("hb"), unique("hb-group")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()

    assigned: list[tuple[float, int]] = []
    set_up = asyncio.Event()

    class SlowSetUp(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, partitions: Any) -> None:
            assigned.append((time.monotonic(), consumer._coordinator.generation))
            if len(assigned) == 1:
                # like Faust opening stores under load: 1.5 session timeouts
                await asyncio.sleep(SESSION_S * 1.5)
                set_up.set()

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=group,
                                session_timeout_ms=int(SESSION_S * 1000),
                                heartbeat_interval_ms=1000, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.subscribe([topic], listener=SlowSetUp())
        fetching = asyncio.ensure_future(consumer.getmany(timeout_ms=60_000))
        await asyncio.wait_for(set_up.wait(), 60)
        generation = assigned[0][1]
        # still the member of that generation: a commit with its generation and
        # member id is accepted (an expelled member's commit is refused)
        await consumer.commit({TopicPartition(topic, 0): 0})
        assert consumer._coordinator.generation == generation
        assert [g for _, g in assigned] == [generation], assigned
        fetching.cancel()
    finally:
        await consumer.stop()


def test_store_collects_garbage_only_when_a_rebalance_drops_a_database(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import faust
    from faust.types import TP

    faust_fixes.apply()
    app = faust.App(unique("gc-app"), store="rocksdb://", tabledir=str(tmp_path), env={})
    table = app.Table("t", partitions=2)
    store = table.data
    changelog = table.changelog_topic.get_topic_name()
    collections = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or real_collect(*a))

    store._db_for_partition(0)
    store.revoke_partitions(table, set())  # an assignment that revokes nothing
    store.revoke_partitions(table, {TP(changelog, 1)})  # a partition it never opened
    assert collections == []  # was one full collection per table per rebalance
    store.revoke_partitions(table, {TP(changelog, 0)})
    assert len(collections) == 1 and 0 not in store._dbs
    store._db_for_partition(0)  # the revoked database's lock was released: reopens
