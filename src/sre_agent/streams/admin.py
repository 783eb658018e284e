"""Create every topic (and DLQ) with its configured partitions before the app runs.

Kafka would otherwise auto-create a topic with the broker default (1
partition) at the first produce, which breaks co-partitioning with tables.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ..config import Settings
from ..schemas import TOPIC_MODELS
from ..sinks.kafka import bootstrap_servers, client_kwargs
from .audit_agent import TICKETS_RETRY_TOPIC
from .correlate_agent import SIGNALS_TOPIC
from .notify_agent import NOTIFY_TICKS_TOPIC
from .topics import COMPACTED

__all__ = ["bootstrap_servers", "ensure_topics", "topic_specs"]

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> dict[str, int]:
    """Topic name -> partitions, for every topic and its DLQ."""
    k = settings.kafka
    out = {settings.topic(n): k.partitions for n in TOPIC_MODELS}
    out.update({settings.topic(f"{n}.dlq"): 1 for n in TOPIC_MODELS})
    # internal re-keying topic of the correlator (co-partitioned with its table)
    out[settings.topic(SIGNALS_TOPIC)] = k.partitions
    # the ticket writer's private retry topic (partitioned like incidents)
    out[settings.topic(TICKETS_RETRY_TOPIC)] = k.partitions
    # the notifier's private tick topic (partitioned like incidents)
    out[settings.topic(NOTIFY_TICKS_TOPIC)] = k.partitions
    return out


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; return the names created."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings.kafka),
                                request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = topic_specs(settings)
        compact = {settings.topic(n) for n in COMPACTED}
        new = [NewTopic(name, num_partitions=p, replication_factor=settings.kafka.replication,
                        topic_configs={"cleanup.policy": "compact"} if name in compact else {})
               for name, p in specs.items() if name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:  # another worker won the race
                pass
            log.info("created %d topics", len(new))
        return [t.name for t in new]
    finally:
        await admin.close()


def ensure_topics_sync(settings: Settings) -> list[str]:
    return asyncio.run(ensure_topics(settings))
