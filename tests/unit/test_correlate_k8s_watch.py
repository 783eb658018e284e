"""The leader's k8s watch with the real kubernetes-asyncio client against kmock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import kmock

from sre_agent.config import KubernetesSettings, Settings
from sre_agent.streams.context import Stats
from sre_agent.streams.ingest_k8s import K8sWatch

EVENTS = kmock.resource("", "v1", "events")
PODS = kmock.resource("", "v1", "pods")


@dataclass
class FakeApp:
    leader: bool = True

    def is_leader(self) -> bool:
        return self.leader


@dataclass
class FakeCtx:
    """Just what the watch uses: settings, stats, app.is_leader(), send()."""

    settings: Settings
    app: FakeApp = field(default_factory=FakeApp)
    stats: Stats = field(default_factory=Stats)
    sent: list[Any] = field(default_factory=list)

    async def send(self, event: Any) -> None:
        self.sent.append(event)


async def test_watch_turns_warning_events_and_pod_states_into_k8s_events() -> None:
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as server:
        km.objects[EVENTS, "shop", "api.1"] = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "api.1", "namespace": "shop",
                                                               "uid": "e1"},
            "involvedObject": {"kind": "Pod", "name": "api-7d9f8b6c4-xk2lp", "namespace": "shop"},
            "reason": "Unhealthy", "message": "Readiness probe failed: 503", "type": "Warning",
            "count": 3, "lastTimestamp": "2026-02-01T10:00:00Z"}
        km.objects[EVENTS, "shop", "api.2"] = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "api.2", "namespace": "shop",
                                                               "uid": "e2"},
            "involvedObject": {"kind": "Pod", "name": "api-7d9f8b6c4-xk2lp", "namespace": "shop"},
            "reason": "Pulled", "message": "image pulled", "type": "Normal"}
        km.objects[PODS, "fin", "pay-5c8d7f9b6-abcde"] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pay-5c8d7f9b6-abcde", "namespace": "fin", "uid": "p1",
                         "labels": {"app": "payments"}},
            "status": {"containerStatuses": [{"name": "app", "restartCount": 2,
                                              "state": {"running": {}},
                                              "lastState": {"terminated": {"reason": "OOMKilled",
                                                                           "exitCode": 137}}}]}}
        settings = Settings(kubernetes=KubernetesSettings(enabled=True,
                                                          host=str(server.url).rstrip("/")))
        ctx = FakeCtx(settings)
        watch = K8sWatch(ctx, timeout_seconds=5)  # type: ignore[arg-type]
        watch.ensure()
        try:
            for _ in range(100):
                if len(ctx.sent) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            assert watch.task is not None
            watch.task.cancel()
            await asyncio.gather(watch.task, return_exceptions=True)
        reasons = sorted((e.reason, e.namespace) for e in ctx.sent)
        assert reasons == [("OOMKilled", "fin"), ("Unhealthy", "shop")], ctx.sent
        assert ctx.stats.health["k8s-watch-events"] == {"ok": True}
        oom = next(e for e in ctx.sent if e.reason == "OOMKilled")
        assert oom.service == "payments" and oom.count == 2
