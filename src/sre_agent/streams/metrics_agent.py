"""metrics -> per-series baselines (table) -> anomalies."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..processors import MetricDetector
from ..schemas import MetricBatch
from .context import StreamContext

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(ctx: StreamContext) -> None:
    table = ctx.tables.baselines
    detector = MetricDetector(ctx.settings.anomaly_detection, load=table.get)
    ctx.state["metric_detector"] = detector
    interval = ctx.settings.worker.checkpoint_interval
    last_checkpoint: dict[int, float] = {}

    def checkpoint(partition: int, force: bool) -> int:
        now = time.monotonic()
        if not force and now - last_checkpoint.get(partition, 0.0) < interval:
            return 0
        last_checkpoint[partition] = now
        dirty = detector.take_dirty(tag=partition)
        for sid, state in dirty.items():
            table[sid] = state
        return len(dirty)

    @ctx.app.agent(ctx.topics["metrics"], name="metrics-baseline")
    async def metrics_baseline(stream: Any) -> None:
        async for event in stream.events():
            batch = await ctx.decode(MetricBatch, event, stage="metrics-baseline")
            if batch is None:
                continue
            partition = event.message.partition
            ctx.stats.samples_in += batch.sample_count()
            anomalies = detector.update(batch, tag=partition)
            for anomaly in anomalies:
                await ctx.send(anomaly)
            # state transitions (open/resolve) are checkpointed at once
            checkpoint(partition, force=bool(anomalies))

    @ctx.app.on_partitions_revoked.connect
    async def on_revoked(app: Any, revoked: Any, **kw: Any) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == ctx.topics["metrics"].get_topic_name()}
        if parts:
            dropped = detector.forget(parts)
            log.info("partitions %s revoked: dropped %d in-memory series", sorted(parts), dropped)
