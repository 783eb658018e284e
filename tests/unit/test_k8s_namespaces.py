"""``kubernetes.namespaces``: what the chart's namespaced RBAC mode lets the agent do.

The watch lists each listed namespace (a namespaced Role grants no cluster-wide list),
and the executor refuses a target elsewhere with a clear reason instead of a 403.
Real kubernetes-asyncio client against kmock's emulator.
"""

from __future__ import annotations

import asyncio

import kmock
import pytest

from sre_agent.config import KubernetesSettings, Settings
from sre_agent.schemas import ActionStep, Target
from sre_agent.sinks.kubernetes import KubeActions, KubeError
from sre_agent.streams.ingest_k8s import K8sWatch
from tests.unit.test_correlate_k8s_watch import EVENTS, FakeCtx


def _event(ns: str, name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns, "uid": f"{ns}-{name}"},
            "involvedObject": {"kind": "Pod", "name": "api-7d9f8b6c4-xk2lp", "namespace": ns},
            "reason": "Unhealthy", "message": "Readiness probe failed: 503", "type": "Warning",
            "count": 3, "lastTimestamp": "2026-02-01T10:00:00Z"}


async def test_watch_lists_only_the_configured_namespaces() -> None:
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as server:
        for ns in ("shop", "fin", "kube-system"):
            km.objects[EVENTS, ns, "e1"] = _event(ns, "e1")
        settings = Settings(kubernetes=KubernetesSettings(
            enabled=True, host=str(server.url).rstrip("/"), namespaces=["shop", "fin"]))
        ctx = FakeCtx(settings)
        watch = K8sWatch(ctx, timeout_seconds=5)  # type: ignore[arg-type]
        watch.ensure()
        try:
            for _ in range(100):
                health = ctx.stats.health
                if len(ctx.sent) >= 2 and {"k8s-watch-pods-shop", "k8s-watch-pods-fin"} <= set(health):
                    break
                await asyncio.sleep(0.1)
        finally:
            assert watch.task is not None
            watch.task.cancel()
            await asyncio.gather(watch.task, return_exceptions=True)
        assert sorted(e.namespace for e in ctx.sent) == ["fin", "shop"], ctx.sent
        assert ctx.stats.health["k8s-watch-events-shop"] == {"ok": True}
        assert ctx.stats.health["k8s-watch-events-fin"] == {"ok": True}
        assert "k8s-watch-events" not in ctx.stats.health  # no cluster-wide watch


async def test_executor_refuses_a_namespace_it_does_not_watch() -> None:
    kube = KubeActions(settings=KubernetesSettings(enabled=True, namespaces=["shop"]))
    step = ActionStep(action="restart_pod", target=Target(kind="pod", name="p", namespace="fin"))
    with pytest.raises(KubeError, match="namespace 'fin' is not watched"):
        await kube.act(step)
    with pytest.raises(KubeError, match="not watched"):
        await kube.get(step.target, step)
    with pytest.raises(KubeError, match="not watched"):
        await kube.restore(step, {})


async def test_an_error_answer_is_an_error_not_an_object() -> None:
    """Raw calls (``_preload_content=False``) are not status-checked by the client: a
    404's ``Status`` body was taken for the object (observe crashed on "'str' object has
    no attribute 'get'") and a refused delete passed for done."""
    async with kmock.KubernetesEmulator() as km, kmock.Server(km) as server:
        kube = KubeActions(settings=KubernetesSettings(enabled=True,
                                                       host=str(server.url).rstrip("/")))
        await kube.setup()
        try:
            gone = ActionStep(action="rollout_restart",
                              target=Target(kind="deployment", name="svc-t", namespace="default"))
            assert await kube.observe(gone) == {"exists": False}
            missing_pod = ActionStep(action="restart_pod",
                                     target=Target(kind="pod", name="api-x", namespace="shop"))
            with pytest.raises(KubeError, match="restart_pod pod/shop/api-x: 404"):
                await kube.act(missing_pod)
        finally:
            await kube.close()
