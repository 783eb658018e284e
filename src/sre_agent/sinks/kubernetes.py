"""Kubernetes actions with kubernetes-asyncio: observe, snapshot, act, restore.

Objects are handled as plain JSON dicts (``_preload_content=False``): what is
observed is what is snapshotted and what a rollback re-applies.

* ``restart_pod`` — delete the pod (its controller recreates it);
* ``rollout_restart`` — patch ``kubectl.kubernetes.io/restartedAt`` on the template;
* ``scale`` — patch ``spec.replicas`` (absolute, or a factor, capped);
* ``set_hpa_bounds`` — patch the HPA's min/max replicas;
* ``rollout_undo`` — like ``kubectl rollout undo``: find the deployment's previous
  ReplicaSet revision (``deployment.kubernetes.io/revision``, owned by the
  deployment's uid) and JSON-patch ``/spec/template`` with its pod template;
* ``run_job`` — create a Job from a CronJob's job template (e.g. clear a cache);
* ``enable_rate_limit`` — set a key in the rate-limit ConfigMap the gateway reads.

:meth:`KubeActions.observe` returns what the pre-checks and the identity check
need (``exists``, ``uid``, ``revision``, ``previous_revision``, ``replicas``...).
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from ..config import KubernetesSettings
from ..schemas import ActionStep, Target

__all__ = ["KubeActions", "KubeError", "kube_configuration", "previous_revision"]

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class KubeError(RuntimeError):
    """An action the API refused, or an object not in the expected shape."""


async def kube_configuration(s: KubernetesSettings) -> Configuration:
    """Client configuration: in-cluster, a kubeconfig, or an explicit host (+ token)."""
    from kubernetes_asyncio import config

    cfg = Configuration()
    if s.in_cluster:
        config.load_incluster_config(client_configuration=cfg)
    elif s.kubeconfig:
        await config.load_kube_config(config_file=str(s.kubeconfig), client_configuration=cfg)
    if s.host:
        cfg.host = s.host.rstrip("/")
    if s.token is not None:
        cfg.api_key = {"authorization": s.token.get_secret_value()}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    return cfg


def _revision(obj: dict[str, Any]) -> int | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def previous_revision(deployment: dict[str, Any], replicasets: list[dict[str, Any]],
                      to_revision: int | None = None) -> dict[str, Any] | None:
    """The ReplicaSet to roll back to: ``to_revision``, else the newest older one.

    >>> dep = {"metadata": {"uid": "d1", "annotations": {REVISION: "3"}}}
    >>> own = [{"uid": "d1", "controller": True}]
    >>> rs = [{"metadata": {"name": f"rs{i}", "ownerReferences": own,
    ...                     "annotations": {REVISION: str(i)}}} for i in (1, 2, 3)]
    >>> previous_revision(dep, rs)["metadata"]["name"], previous_revision(dep, rs, 1)["metadata"]["name"]
    ('rs2', 'rs1')
    """
    uid = (deployment.get("metadata") or {}).get("uid")
    current = _revision(deployment)
    owned = []
    for rs in replicasets:
        refs = (rs.get("metadata") or {}).get("ownerReferences") or []
        if uid and not any(r.get("uid") == uid and r.get("controller", True) for r in refs):
            continue
        rev = _revision(rs)
        if rev is not None:
            owned.append((rev, rs))
    if to_revision is not None:
        return next((rs for rev, rs in owned if rev == to_revision), None)
    older = [(rev, rs) for rev, rs in owned if current is None or rev < current]
    return max(older, key=lambda x: x[0])[1] if older else None


def _clean_template(template: dict[str, Any]) -> dict[str, Any]:
    t = dict(template)
    meta = dict(t.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
    meta["labels"] = labels
    t["metadata"] = meta
    return t


class KubeActions:
    """Owns one :class:`ApiClient`; ``setup`` builds it from settings."""

    def __init__(self, api: ApiClient | None = None, settings: KubernetesSettings | None = None) -> None:
        self.api = api
        self.settings = settings

    async def setup(self) -> None:
        if self.api is None:
            assert self.settings is not None
            self.api = ApiClient(await kube_configuration(self.settings))

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()
            self.api = None

    # ------------------------------------------------------------ raw access
    def _apis(self) -> tuple[Any, Any, Any, Any]:
        assert self.api is not None, "KubeActions.setup() first"
        return (client.CoreV1Api(self.api), client.AppsV1Api(self.api),
                client.AutoscalingV2Api(self.api), client.BatchV1Api(self.api))

    async def _json(self, coro: Any) -> dict[str, Any]:
        """The JSON object of a raw (``_preload_content=False``) call.

        kubernetes-asyncio checks the status only when it preloads the content, so it is
        checked here: a 4xx/5xx answer raises :class:`ApiException` (before this, a
        refused delete or patch, its ``Status`` body parsed as the object, passed for
        success, and a missing object for one that exists).
        """
        resp = await coro
        try:
            status, data = resp.status, await resp.read()
        finally:
            resp.release()
        try:
            body = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            body = data[:200].decode(errors="replace")
        if not 200 <= status <= 299:
            why = body.get("message") or body.get("reason") if isinstance(body, dict) else body
            raise ApiException(status=status, reason=str(why or "")[:300])
        if not isinstance(body, dict):
            raise KubeError(f"the API server answered {type(body).__name__}, not an object: "
                            f"{str(body)[:120]!r}")
        return body

    def _check_namespace(self, target: Target) -> None:
        """Refuse targets outside ``kubernetes.namespaces`` (when set) with a clear reason,
        instead of a 403 from a namespaced Role."""
        allowed = self.settings.namespaces if self.settings is not None else []
        if allowed and target.namespace not in allowed:
            raise KubeError(f"{target.ref()}: namespace {target.namespace!r} is not watched "
                            f"(kubernetes.namespaces: {', '.join(allowed)})")

    async def get(self, target: Target, step: ActionStep | None = None) -> dict[str, Any] | None:
        """The raw object behind ``target`` (None if absent)."""
        self._check_namespace(target)
        core, apps, hpa, batch = self._apis()
        n, ns = target.name, target.namespace
        kw = {"_preload_content": False}
        try:
            if target.kind == "pod":
                return await self._json(core.read_namespaced_pod(n, ns, **kw))
            if target.kind == "deployment":
                return await self._json(apps.read_namespaced_deployment(n, ns, **kw))
            if target.kind == "statefulset":
                return await self._json(apps.read_namespaced_stateful_set(n, ns, **kw))
            if target.kind == "hpa":
                return await self._json(hpa.read_namespaced_horizontal_pod_autoscaler(n, ns, **kw))
            if target.kind == "job":
                cron = (step.params.get("from_cronjob") if step else None) or n
                return await self._json(batch.read_namespaced_cron_job(cron, ns, **kw))
            if target.kind == "service":
                cm = (step.params.get("configmap") if step else None) or "rate-limits"
                return await self._json(core.read_namespaced_config_map(cm, ns, **kw))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"GET {target.ref()}: {exc.status} {exc.reason}") from None
        raise KubeError(f"{target.kind} is not a Kubernetes target")

    async def _replicasets(self, namespace: str) -> list[dict[str, Any]]:
        _, apps, _, _ = self._apis()
        body = await self._json(apps.list_namespaced_replica_set(namespace, _preload_content=False))
        return list(body.get("items") or [])

    # ------------------------------------------------------------ observe / snapshot
    async def observe(self, step: ActionStep) -> dict[str, Any]:
        """What the identity check, pre-checks and verification look at."""
        obj = await self.get(step.target, step)
        if obj is None:
            return {"exists": False}
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        out: dict[str, Any] = {"exists": True, "uid": meta.get("uid"),
                               "generation": meta.get("generation"),
                               "observed_generation": status.get("observedGeneration")}
        if step.target.kind in ("deployment", "statefulset"):
            out.update(replicas=spec.get("replicas"), updated_replicas=status.get("updatedReplicas"),
                       available_replicas=status.get("availableReplicas"))
            rev = _revision(obj)
            out["revision"] = str(rev) if rev is not None else None
            if step.action == "rollout_undo":
                prev = previous_revision(obj, await self._replicasets(step.target.namespace),
                                         step.params.get("to_revision"))
                out["previous_revision"] = str(_revision(prev)) if prev else None
        elif step.target.kind == "hpa":
            out.update(min_replicas=spec.get("minReplicas"), max_replicas=spec.get("maxReplicas"),
                       replicas=status.get("currentReplicas"))
        elif step.target.kind == "pod":
            out.update(phase=status.get("phase"), node=spec.get("nodeName"))
        return out

    async def snapshot(self, step: ActionStep) -> dict[str, Any]:
        """The target's state before acting (enough to restore it)."""
        obj = await self.get(step.target, step)
        if obj is None:
            return {}
        meta = obj.get("metadata") or {}
        keep = {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion",
                                          "generation", "annotations", "labels")}
        return {"kind": step.target.kind, "metadata": keep, "spec": obj.get("spec"),
                "data": obj.get("data")}

    # ------------------------------------------------------------ act / restore
    async def act(self, step: ActionStep) -> str:
        """Perform ``step``; return a one-line description of what was done."""
        self._check_namespace(step.target)
        core, apps, hpa, batch = self._apis()
        t, p = step.target, step.params
        n, ns = t.name, t.namespace
        kw = {"_preload_content": False}
        try:
            if step.action == "restart_pod":
                # only the pod the plan was made for: a replacement with the same name
                # is refused by the API server (409), never deleted in its place
                pre = {"body": {"preconditions": {"uid": t.uid}}} if t.uid else {}
                await self._json(core.delete_namespaced_pod(n, ns, **pre, **kw))
                return f"deleted pod {ns}/{n}"
            if step.action == "rollout_restart":
                now = datetime.now(UTC).isoformat(timespec="seconds")
                body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
                patch = apps.patch_namespaced_deployment if t.kind == "deployment" \
                    else apps.patch_namespaced_stateful_set
                await self._json(patch(n, ns, body, **kw))
                return f"restarted {t.ref()} at {now}"
            if step.action == "scale":
                cur = await self.get(t, step) or {}
                have = int((cur.get("spec") or {}).get("replicas") or 0)
                want = p.get("replicas")
                if want is None:
                    want = math.ceil(max(have, 1) * float(p.get("factor", 1.0)))
                want = min(int(want), int(p.get("max_replicas", 50)))
                # the scale subresource: all the seed's least-privilege RBAC grants
                await self._json(self._scale_fn(t.kind)(n, ns, {"spec": {"replicas": want}}, **kw))
                return f"scaled {t.ref()} from {have} to {want} replicas"
            if step.action == "set_hpa_bounds":
                spec = {k: v for k, v in (("minReplicas", p.get("min_replicas")),
                                          ("maxReplicas", p.get("max_replicas"))) if v is not None}
                await self._json(hpa.patch_namespaced_horizontal_pod_autoscaler(
                    n, ns, {"spec": spec}, **kw))
                return f"set {t.ref()} bounds {spec}"
            if step.action == "rollout_undo":
                return await self._undo(step)
            if step.action == "run_job":
                return await self._run_job(step)
            if step.action == "enable_rate_limit":
                cm = p.get("configmap", "rate-limits")
                await self._json(core.patch_namespaced_config_map(
                    cm, ns, {"data": {p.get("key", n): str(p["value"])}}, **kw))
                return f"set rate limit {p.get('key', n)}={p['value']} in configmap {ns}/{cm}"
        except ApiException as exc:
            raise KubeError(f"{step.action} {t.ref()}: {exc.status} {exc.reason}") from None
        raise KubeError(f"{step.action} is not a Kubernetes action")

    def _scale_fn(self, kind: str) -> Any:
        _, apps, _, _ = self._apis()
        return (apps.patch_namespaced_deployment_scale if kind == "deployment"
                else apps.patch_namespaced_stateful_set_scale)

    async def _undo(self, step: ActionStep) -> str:
        _, apps, _, _ = self._apis()
        t = step.target
        dep = await self.get(t, step)
        if dep is None:
            raise KubeError(f"{t.ref()} not found")
        prev = previous_revision(dep, await self._replicasets(t.namespace),
                                 step.params.get("to_revision"))
        if prev is None:
            raise KubeError(f"{t.ref()}: no previous revision to roll back to")
        template = _clean_template((prev.get("spec") or {}).get("template") or {})
        await self._json(apps.patch_namespaced_deployment(
            t.name, t.namespace, [{"op": "replace", "path": "/spec/template", "value": template}],
            _preload_content=False))
        return f"rolled {t.ref()} back from revision {_revision(dep)} to {_revision(prev)} " \
               f"({(prev.get('metadata') or {}).get('name')})"

    async def _run_job(self, step: ActionStep) -> str:
        _, _, _, batch = self._apis()
        t = step.target
        cron = await self.get(t, step)
        if cron is None:
            raise KubeError(f"cronjob {t.namespace}/{step.params.get('from_cronjob') or t.name} not found")
        cname = (cron.get("metadata") or {}).get("name", t.name)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        job_spec = ((cron.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
        body = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"{cname}-sre-{stamp}"[:63], "namespace": t.namespace,
                             "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
                "spec": job_spec}
        await self._json(batch.create_namespaced_job(t.namespace, body, _preload_content=False))
        return f"created job {t.namespace}/{body['metadata']['name']} from cronjob {cname}"

    async def restore(self, step: ActionStep, snapshot: dict[str, Any]) -> str:
        """Put back what :meth:`snapshot` saw (the rollback of a failed action)."""
        self._check_namespace(step.target)
        core, apps, hpa, _ = self._apis()
        t, spec = step.target, snapshot.get("spec") or {}
        kw = {"_preload_content": False}
        try:
            if step.action == "rollout_undo" and spec.get("template"):
                await self._json(apps.patch_namespaced_deployment(
                    t.name, t.namespace,
                    [{"op": "replace", "path": "/spec/template", "value": spec["template"]}], **kw))
                return f"restored the pod template of {t.ref()}"
            if step.action == "scale" and spec.get("replicas") is not None:
                await self._json(self._scale_fn(t.kind)(
                    t.name, t.namespace, {"spec": {"replicas": spec["replicas"]}}, **kw))
                return f"restored {t.ref()} to {spec['replicas']} replicas"
            if step.action == "set_hpa_bounds":
                body = {"spec": {"minReplicas": spec.get("minReplicas"),
                                 "maxReplicas": spec.get("maxReplicas")}}
                await self._json(hpa.patch_namespaced_horizontal_pod_autoscaler(
                    t.name, t.namespace, body, **kw))
                return f"restored {t.ref()} bounds"
            if step.action == "enable_rate_limit":
                key = step.params.get("key", t.name)
                old = (snapshot.get("data") or {}).get(key)
                cm = step.params.get("configmap", "rate-limits")
                await self._json(core.patch_namespaced_config_map(
                    cm, t.namespace, {"data": {key: old}}, **kw))
                return f"restored rate limit {key}={old!r}"
        except ApiException as exc:
            raise KubeError(f"rollback of {step.action} {t.ref()}: {exc.status} {exc.reason}") from None
        return "nothing to restore"
