"""The Kubernetes watch (leader only): core/v1 Events and Pod states -> ``k8s-events``.

A leader-only Faust timer keeps one watch task alive on the leader: the task
watches ``Event`` objects (Warning events: BackOff, FailedScheduling, probe
failures, evictions ...) and ``Pod`` objects (container states CrashLoopBackOff,
ImagePullBackOff, last-terminated OOMKilled) in all namespaces (or, with
``kubernetes.namespaces`` set, in those only: what a namespaced Role allows) with
kubernetes-asyncio, and produces :class:`~sre_agent.schemas.K8sEvent`. It stops
when this worker is no longer the leader; watch errors are retried with
backoff and reported in ``/status`` health.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import orjson

from ..processors.ingest import k8s_event_from_event, k8s_events_from_pod
from ..schemas import K8sEvent
from .context import StreamContext

__all__ = ["K8sWatch", "register"]

log = logging.getLogger(__name__)


class K8sWatch:
    """Owns the kubernetes-asyncio client and the two watch loops."""

    def __init__(self, ctx: StreamContext, timeout_seconds: int = 300) -> None:
        self.ctx = ctx
        self.timeout_seconds = timeout_seconds
        self.task: asyncio.Task[None] | None = None
        #: recently produced event ids (watch restarts replay objects)
        self._seen: dict[str, None] = {}

    def _fresh(self, ev: K8sEvent) -> bool:
        if ev.event_id in self._seen:
            return False
        self._seen[ev.event_id] = None
        if len(self._seen) > 10_000:
            for k in list(self._seen)[:5_000]:
                del self._seen[k]
        return True

    async def _stream(self, list_fn: Any, resource_version: str | None) -> Any:
        """Raw watch events ``{"type", "object"}`` of one watch request (JSON lines)."""
        kw: dict[str, Any] = {"watch": "true", "timeout_seconds": self.timeout_seconds,
                              "_preload_content": False}
        if resource_version:
            kw["resource_version"] = resource_version
        resp = await list_fn(**kw)
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield orjson.loads(line)
        finally:
            resp.release()

    async def _loop(self, list_fn: Any, convert: Any, name: str) -> None:
        health = self.ctx.stats.health
        delay, rv = 1.0, None
        while self.ctx.app.is_leader():
            try:
                async for item in self._stream(list_fn, rv):
                    obj = item.get("object")
                    if item.get("type") == "ERROR" or not isinstance(obj, dict):
                        rv = None  # e.g. 410 Gone: resourceVersion too old, start over
                        raise RuntimeError(f"watch error: {str(obj)[:200]}")
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    health[f"k8s-watch-{name}"] = {"ok": True}
                    delay = 1.0
                    if item.get("type") in ("ADDED", "MODIFIED"):
                        for ev in convert(obj):
                            if self._fresh(ev):
                                await self.ctx.send(ev)
                    if not self.ctx.app.is_leader():
                        break
                health.setdefault(f"k8s-watch-{name}", {"ok": True})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                health[f"k8s-watch-{name}"] = {"ok": False, "error": str(exc)[:300]}
                log.warning("k8s %s watch failed (retry in %.0fs): %s", name, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def run(self) -> None:
        from kubernetes_asyncio import client

        from ..sinks.kubernetes import kube_configuration

        cfg = await kube_configuration(self.ctx.settings.kubernetes)
        namespaces = self.ctx.settings.kubernetes.namespaces

        def events(o: dict[str, Any]) -> list[K8sEvent]:
            return [e for e in [k8s_event_from_event(o)] if e]

        async with client.ApiClient(cfg) as api:
            v1 = client.CoreV1Api(api)
            if not namespaces:
                await asyncio.gather(
                    self._loop(v1.list_event_for_all_namespaces, events, "events"),
                    self._loop(v1.list_pod_for_all_namespaces, k8s_events_from_pod, "pods"))
                return
            # one watch per namespace and kind: a namespaced Role grants nothing cluster-wide
            await asyncio.gather(*(
                loop for ns in namespaces for loop in (
                    self._loop(functools.partial(v1.list_namespaced_event, ns), events,
                               f"events-{ns}"),
                    self._loop(functools.partial(v1.list_namespaced_pod, ns),
                               k8s_events_from_pod, f"pods-{ns}"))))

    def ensure(self) -> None:
        """Start the watch task if it is not running (called on the leader)."""
        if self.task is None or self.task.done():
            if self.task is not None and not self.task.cancelled() and self.task.exception():
                log.warning("k8s watch ended: %s", self.task.exception())
            self.task = asyncio.ensure_future(self.run())


def register(ctx: StreamContext) -> None:
    watcher = K8sWatch(ctx)
    ctx.stages.k8s_watch = watcher

    @ctx.app.timer(5.0, on_leader=True)
    async def k8s_watch_leader() -> None:
        watcher.ensure()
