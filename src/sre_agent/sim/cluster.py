"""The simulated platform as a cluster the executor acts on (``sre-agent eval``).

:class:`SimCluster` answers the calls the executor makes of a Kubernetes (or AWS)
back-end — ``observe``, ``snapshot``, ``act``, ``restore`` — against the
simulator's world, with the same semantics as :class:`~sre_agent.sinks.kubernetes.KubeActions`:
a ``scale`` by a factor adds that many replicas (capped), a ``rollout_undo`` needs a
previous revision, a pod deleted with a stale uid is refused, an object that does not
exist is an error. An accepted action becomes a :class:`~sre_agent.sim.engine.Change`
the platform applies after the action's execution delay: the faults react to it
(or do not) and the physics (replicas, rate limit, readiness) take it from there,
so whether it heals is what the simulated platform does next, never what the back-end
claims. :class:`ClusterServer` serves it over HTTP to the worker (the eval's worker
is a subprocess); :class:`sre_agent.sinks.simcluster.SimClusterActions` is the client.

What the simulator does not model is absent, as on a cluster without it: HPAs and RDS
clusters do not exist. Workloads are named after components (Deployment or
StatefulSet alike), pods as the platform names them, EC2 instances by id or node name,
maintenance CronJobs as ``<component>-<task>``; namespaces are not modelled (one view).

Examples
--------
>>> from sre_agent.schemas import ActionStep, Target
>>> from sre_agent.sim.engine import Platform
>>> p = Platform(seed=1, start=1_700_000_000.0)
>>> c = SimCluster(p)
>>> step = ActionStep(action="scale", target=Target(kind="deployment", name="api-gateway"),
...                   params={"factor": 1.5, "max_replicas": 50})
>>> c.observe(step)["replicas"]
4
>>> c.act(step)
'scaled deployment/default/api-gateway from 4 to 6 replicas'
>>> c.observe(step)["replicas"], p.replicas["api-gateway"]   # desired now, running later
(6, 4)
>>> _ = [p.step() for _ in range(3)]
>>> p.replicas["api-gateway"]
6
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..schemas import ActionStep, SreAction
from .engine import Change, Platform
from .faults import ACTION_DELAY

__all__ = ["ClusterServer", "SimCluster", "SimClusterError"]

log = logging.getLogger(__name__)

WORKLOADS = frozenset({"deployment", "statefulset"})
#: the scale cap when a step names none (the Kubernetes back-end's default)
MAX_REPLICAS = 50


class SimClusterError(RuntimeError):
    """A call the simulated cluster refuses (HTTP-like ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _uid(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:16]


@dataclass
class SimCluster:
    """The simulated platform behind the executor's back-end interface.

    Parameters
    ----------
    platform
        The simulator's world.
    clock
        Sample time "now" (the replay's clock; default the platform's).
    lookup
        The ``sre-actions`` event a step belongs to, if known: its ids go to the
        ledger (the back-end interface carries the step only).
    """

    platform: Platform
    clock: Callable[[], float] | None = None
    lookup: Callable[[ActionStep], SreAction | None] = lambda step: None
    #: workload -> generation (bumped by every spec change)
    generation: Counter[str] = field(default_factory=Counter)
    #: workload -> sample time its current rollout completes
    rollout_until: dict[str, float] = field(default_factory=dict)
    #: workload -> replicas asked for (the spec; the platform follows after the delay)
    desired: dict[str, int] = field(default_factory=dict)
    #: pod name -> times it was deleted (a new uid each time)
    pod_restarts: Counter[str] = field(default_factory=Counter)
    #: configmap -> data (the gateway's rate limits)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    #: ids of the sre-actions whose step was applied
    applied: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)

    def now(self) -> float:
        return self.clock() if self.clock is not None else self.platform.t

    def _spec_replicas(self, name: str) -> int:
        """Replicas asked for: a pending scale's, else what runs."""
        if name in self.desired and self.now() < self.rollout_until.get(name, float("-inf")):
            return self.desired[name]
        return self.platform.replicas[name]

    # ------------------------------------------------------------ objects
    def _workload(self, step: ActionStep) -> str | None:
        name = step.target.name
        return name if name in self.platform.topo else None

    def _pods(self) -> dict[str, tuple[str, int]]:
        """Current pod name -> (component, index)."""
        p = self.platform
        out = {}
        for c in p.topo:
            n = p.replicas[c.name]
            names = c.pods(n) if c.kind == "service" else [f"{c.name}-{i}" for i in range(n)]
            for i, pod in enumerate(names):
                out[pod] = (c.name, i)
        return out

    def _node(self, step: ActionStep) -> Any:
        want = {step.target.name, *(v for k, v in step.params.items()
                                    if k in ("instance_id", "node", "node_name")
                                    and isinstance(v, str))}
        return next((n for n in self.platform.topo.nodes.values()
                     if want & {n.name, n.instance_id}), None)

    def _cronjob(self, step: ActionStep) -> str | None:
        name = str(step.params.get("from_cronjob") or step.target.name)
        return name if any(name.startswith(c.name + "-") for c in self.platform.topo) else None

    def _exists(self, step: ActionStep) -> bool:
        kind = step.target.kind
        if kind in WORKLOADS:
            return self._workload(step) is not None
        if kind == "pod":
            return step.target.name in self._pods()
        if kind == "service":
            return step.target.name in self.platform.topo
        if kind == "job":
            return self._cronjob(step) is not None
        if kind == "ec2":
            return self._node(step) is not None
        return False  # hpa, rds, anything else: not in the simulated platform

    # ------------------------------------------------------------ observe / snapshot
    def observe(self, step: ActionStep) -> dict[str, Any]:
        """What :meth:`KubeActions.observe` returns, for the simulated object."""
        self.calls["observe"] += 1
        if not self._exists(step):
            return {"exists": False}
        t, kind, name = self.now(), step.target.kind, step.target.name
        out: dict[str, Any] = {"exists": True}
        if kind in WORKLOADS:
            gen = 1 + self.generation[name]
            done = t >= self.rollout_until.get(name, float("-inf"))
            want, have = self._spec_replicas(name), self.platform.replicas[name]
            rev = len(self.platform.versions[name])
            out.update(uid=_uid("workload", name), generation=gen,
                       observed_generation=gen if done else gen - 1, replicas=want,
                       updated_replicas=want if done else 0,
                       available_replicas=have if done else max(0, min(have, want) - 1),
                       revision=str(rev))
            if step.action == "rollout_undo":
                out["previous_revision"] = str(rev - 1) if rev > 1 else None
        elif kind == "pod":
            comp, i = self._pods()[name]
            nodes = self.platform.topo[comp].nodes
            out.update(uid=_uid("pod", name, self.pod_restarts[name]), generation=1,
                       observed_generation=1, phase="Running",
                       node=nodes[i % len(nodes)] if nodes else None)
        else:
            out.update(uid=_uid(kind, name), generation=1, observed_generation=1)
        return out

    def snapshot(self, step: ActionStep) -> dict[str, Any]:
        """The target's state before acting (what :meth:`restore` puts back)."""
        self.calls["snapshot"] += 1
        if not self._exists(step):
            return {}
        kind, name = step.target.kind, step.target.name
        meta = {"name": name, "uid": self.observe(step).get("uid")}
        if kind in WORKLOADS:
            return {"kind": kind, "metadata": meta,
                    "spec": {"replicas": self._spec_replicas(name),
                             "template": {"version": self.platform.versions[name][-1]}}}
        if kind == "service":
            cm = str(step.params.get("configmap", "rate-limits"))
            return {"kind": kind, "metadata": meta, "data": dict(self.configmaps.get(cm, {}))}
        return {"kind": kind, "metadata": meta}

    # ------------------------------------------------------------ act / restore
    def _schedule(self, step: ActionStep, action: str, params: dict[str, Any],
                  reacts: bool = True, label: str = "") -> float:
        p = self.platform
        sre = self.lookup(step) if reacts else None
        targets = p.targets_of_step(step)
        change = (Change.of(sre, targets, reacts=reacts, label=label)
                  if sre is not None else Change(action=step.action,
                                                 targets=frozenset(targets), reacts=reacts,
                                                 label=label))
        change = dataclasses.replace(change, action=action, params=params)
        if sre is not None:
            self.applied.add(sre.action_id)
        return p.schedule(change, self.now())

    def _rollout(self, name: str, action: str) -> None:
        self.generation[name] += 1
        self.rollout_until[name] = self.now() + ACTION_DELAY.get(action, 60.0)

    def act(self, step: ActionStep) -> str:
        """Perform ``step`` on the simulated platform; a one-line description (like
        :meth:`KubeActions.act`), or :class:`SimClusterError`."""
        self.calls["act"] += 1
        t, a, p = step.target, step.action, step.params
        ref = t.ref()
        if not self._exists(step):
            raise SimClusterError(f"{a} {ref}: 404 not found", 404)
        if a == "restart_pod" and t.kind == "pod":
            if t.uid and t.uid != self.observe(step)["uid"]:
                raise SimClusterError(f"{a} {ref}: 409 precondition failed: uid", 409)
            self.pod_restarts[t.name] += 1
            self._schedule(step, a, dict(p))
            return f"deleted pod {t.namespace}/{t.name}"
        if a == "rollout_restart" and t.kind in WORKLOADS:
            self._rollout(t.name, a)
            self._schedule(step, a, dict(p))
            return f"restarted {ref}"
        if a == "scale" and t.kind in WORKLOADS:
            have = self._spec_replicas(t.name)
            want = p.get("replicas")
            if want is None:
                want = math.ceil(max(have, 1) * float(p.get("factor", 1.0)))
            want = min(int(want), int(p.get("max_replicas", MAX_REPLICAS)))
            self.desired[t.name] = want
            self._rollout(t.name, a)
            self._schedule(step, a if want >= have else "set_replicas", {"replicas": want})
            return f"scaled {ref} from {have} to {want} replicas"
        if a == "rollout_undo" and t.kind in WORKLOADS:
            if len(self.platform.versions[t.name]) < 2:
                raise SimClusterError(f"{ref}: no previous revision to roll back to", 409)
            rev = len(self.platform.versions[t.name])
            self._rollout(t.name, a)
            self._schedule(step, a, dict(p))
            return f"rolled {ref} back from revision {rev} to {rev - 1}"
        if a == "run_job" and t.kind == "job":
            cron = self._cronjob(step)
            self._schedule(step, a, dict(p))
            return f"created job {t.namespace}/{cron}-sre from cronjob {cron}"
        if a == "enable_rate_limit" and t.kind == "service":
            cm, key = str(p.get("configmap", "rate-limits")), str(p.get("key", t.name))
            self.configmaps.setdefault(cm, {})[key] = str(p["value"])
            self._schedule(step, a, dict(p))
            return f"set rate limit {key}={p['value']} in configmap {t.namespace}/{cm}"
        if a == "reboot_instance" and t.kind == "ec2":
            node = self._node(step)
            self._schedule(step, a, {**p, "instance_id": node.instance_id, "node": node.name})
            return f"rebooted {node.instance_id} ({node.name})"
        raise SimClusterError(f"{a} on {t.kind} is not an action of the simulated cluster", 400)

    def restore(self, step: ActionStep, snapshot: dict[str, Any]) -> str:
        """Put back what :meth:`snapshot` saw (the rollback of a failed action)."""
        self.calls["restore"] += 1
        t, spec = step.target, snapshot.get("spec") or {}
        if step.action == "scale" and spec.get("replicas") is not None and self._exists(step):
            self.desired[t.name] = int(spec["replicas"])
            self._rollout(t.name, "scale")
            self._schedule(step, "set_replicas", {"replicas": int(spec["replicas"])},
                           reacts=False, label="scale (rolled back)")
            return f"restored {t.ref()} to {spec['replicas']} replicas"
        if step.action == "enable_rate_limit":
            cm, key = str(step.params.get("configmap", "rate-limits")), \
                str(step.params.get("key", t.name))
            old = (snapshot.get("data") or {}).get(key)
            data = self.configmaps.setdefault(cm, {})
            if old is None:
                data.pop(key, None)
            else:
                data[key] = old
            if not data:
                self._schedule(step, "disable_rate_limit", {}, reacts=False,
                               label="enable_rate_limit (rolled back)")
            return f"restored rate limit {key}={old!r}"
        return "nothing to restore"

    # ------------------------------------------------------------ the wire
    def call(self, op: str, body: dict[str, Any]) -> Any:
        """One request of :class:`ClusterServer` (``op`` observe/snapshot/act/restore)."""
        step = ActionStep.model_validate(body.get("step") or {})
        if op == "observe":
            return self.observe(step)
        if op == "snapshot":
            return self.snapshot(step)
        if op == "act":
            return self.act(step)
        if op == "restore":
            return self.restore(step, dict(body.get("snapshot") or {}))
        raise SimClusterError(f"unknown call {op!r}", 404)


#: seconds an ``act`` call waits for the replay to have seen the sre-action it performs
ATTRIBUTION_WAIT = 5.0


class ClusterServer:
    """Serves a :class:`SimCluster` on ``POST /v1/<op>`` (JSON ``{"step": ...}``) in the
    replay's event loop, so calls see the platform between two replayed steps.

    With ``attribution_wait`` (the replay passes :data:`ATTRIBUTION_WAIT`), an ``act``
    call waits at most that many seconds, polling, until the
    cluster's ``lookup`` knows the sre-action of its step. The executor acts as soon as
    it reads the sre-action from Kafka, and the replay's own consumer of that topic may
    not have read it yet (a loaded CI run): the change then carried no action id, the
    ledger named none, and the executor's result made the replay record the executed
    action as refused (tests/integration/test_eval_cluster.py failed so)."""

    def __init__(self, cluster: SimCluster, port: int, host: str = "127.0.0.1",
                 attribution_wait: float = 0.0) -> None:
        self.cluster, self.port, self.host = cluster, port, host
        self.attribution_wait = attribution_wait
        self._runner: Any = None

    async def _await_attribution(self, body: dict[str, Any]) -> None:
        try:
            step = ActionStep.model_validate(body.get("step") or {})
        except ValueError:
            return  # refused by the call itself
        end = time.monotonic() + self.attribution_wait
        while self.cluster.lookup(step) is None and time.monotonic() < end:
            await asyncio.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> ClusterServer:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            try:
                body = dict(await request.json() or {})
                if request.match_info["op"] == "act":
                    await self._await_attribution(body)
                result = self.cluster.call(request.match_info["op"], body)
            except SimClusterError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            except ValueError as exc:  # undecodable or invalid step
                return web.json_response({"error": f"bad request: {exc}"[:500]}, status=400)
            return web.json_response({"result": result})

        app = web.Application()
        app.router.add_post("/v1/{op}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
