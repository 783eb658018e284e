"""The closed-loop platform simulator: one step of sample time at a time.

:class:`Platform` advances the simulated exchange by ``step`` seconds per
:meth:`Platform.step` and returns a :class:`Tick`: every series' sample, log
lines, Kubernetes events, deploys and alert transitions, plus the ground-truth
health of each component. :meth:`Platform.submit` takes an ``sre-actions``
event; after the action's execution delay it reaches the faults (which may
clear) and the platform (replicas, rate limit, revisions), and is written to
:attr:`Platform.ledger`.

Pure and deterministic: no clock, no I/O, seeded RNG streams.

Examples
--------
>>> p = Platform(seed=1, start=1_700_000_000.0)
>>> tick = p.step()
>>> tick.t, len(tick.samples) > 80, all(tick.health.values())
(1700000000.0, True, True)
>>> Platform(seed=1, start=1_700_000_000.0).step().samples == tick.samples
True
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..schemas import ActionStep, Alert, DeployEvent, K8sEvent, LogRecord, SreAction
from .alerts import AlertEvaluator, default_rules
from .fault_kinds import TrafficSurge
from .faults import ACTION_DELAY, Effect, Fault, Outcome
from .logtext import CALLER_TEMPLATES, LogText
from .physics import Vitals, vitals
from .series import Sample, SeriesCatalog
from .topology import EDGE, Topology
from .traffic import Bursts, seasonal

__all__ = ["DEFAULT_EPOCH", "Change", "Platform", "Tick"]

#: Monday 2025-11-03 00:00 UTC: the default start of simulated time
DEFAULT_EPOCH = 1_762_128_000.0
#: cluster addresses of the shared dependencies (what callers' errors show)
ADDRESSES = {"redis": ("10.0.3.12", 6379), "postgres": ("10.0.3.20", 5432),
             "kafka": ("10.0.1.30", 9092)}
#: action params that name what is acted on
_TARGET_PARAMS = ("node", "node_name", "instance", "instance_id", "pod", "deployment",
                  "statefulset", "service", "target", "db_instance")
_RANK = {"none": 0, "absorbed": 1, "mitigated": 2, "resolved": 3}


@dataclass
class Tick:
    """Everything the platform emitted during ``[t, t + step)``."""

    t: float
    samples: list[Sample]
    logs: list[LogRecord] = field(default_factory=list)
    k8s: list[K8sEvent] = field(default_factory=list)
    deploys: list[DeployEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    #: ground truth: is each component healthy right now?
    health: dict[str, bool] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    """One change to the platform, applied after its action's delay (:meth:`Platform.schedule`).

    ``reacts``: whether faults see it (a rollback of a change is no remediation).
    """

    action: str
    targets: frozenset[str]
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    reacts: bool = True
    action_id: str = ""
    plan_id: str = ""
    incident_id: str = ""
    policy: str = ""
    approved_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, action: SreAction, targets: set[str], **kw: Any) -> Change:
        return cls(action=action.step.action, targets=frozenset(targets),
                   params=dict(action.step.params), action_id=action.action_id,
                   plan_id=action.plan_id, incident_id=action.incident_id,
                   policy=action.policy, approved_by=tuple(action.approved_by), **kw)


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Platform:
    """The simulated trading platform.

    Parameters
    ----------
    seed
        Seeds every random stream (noise, bursts, logs, deploys).
    start
        Unix seconds (UTC) of the first step.
    step
        Sample interval in seconds.
    log_lines
        Normal log lines per service per step (error lines come on top).
    """

    def __init__(self, seed: int = 7, start: float = DEFAULT_EPOCH, step: float = 60.0,
                 topology: Topology | None = None, log_lines: int = 1,
                 bursts_per_day: float = 3.0, deploys_per_day: float = 3.0) -> None:
        self.seed = seed
        self.topo = topology or Topology.default()
        self.t = start
        self.step_seconds = step
        self.log_lines = log_lines
        self.deploys_per_day = deploys_per_day
        self.catalog = SeriesCatalog(self.topo, random.Random(f"{seed}/noise"))
        self.bursts = Bursts(random.Random(f"{seed}/bursts"), bursts_per_day)
        self.text = LogText(random.Random(f"{seed}/logs"))
        self.rng = random.Random(f"{seed}/events")
        self.rules = AlertEvaluator(default_rules({c.name: c.p99 for c in self.topo}))
        self.faults: list[Fault] = []
        self.replicas = {c.name: c.replicas for c in self.topo}
        self.entry_cap: float | None = None
        self.versions = {c.name: [f"v1.{4 + i}.{i % 3}"] for i, c in enumerate(self.topo)}
        self.ledger: list[Outcome] = []
        self._pending: list[tuple[float, int, Change]] = []
        self._keys: set[str] = set()
        self._dips: dict[str, tuple[float, float]] = {}
        self._lag: dict[str, float] = {}
        self._seq = 0
        self._queued: dict[str, list[Any]] = {"logs": [], "k8s": [], "deploys": [], "alerts": []}
        self._script: list[tuple[float, int, Callable[[Platform, float], None]]] = []

    # ------------------------------------------------------------ scenario control
    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def at(self, t: float, fn: Callable[[Platform, float], None]) -> None:
        """Run ``fn(platform, t)`` at the step containing sample time ``t`` (scripted events)."""
        self._seq += 1
        heapq.heappush(self._script, (t, self._seq, fn))

    def remove_rule(self, name: str, t: float) -> None:
        """Drop an alert rule; what it had firing is resolved."""
        self._queued["alerts"].extend(self.rules.remove(name, t))

    def end_faults(self, t: float, by: str = "operator") -> list[Fault]:
        """An operator clears what is left (end of a scenario window); reset scale-outs."""
        left = [f for f in self.faults if f.active(t)]
        for f in left:
            f.clear(t, by)
            if f.version:
                self._rollback(f.target, t, author="oncall@exchange.example")
        self.faults = []
        for name, n in list(self.replicas.items()):
            if n != self.topo[name].replicas:
                self.replicas[name] = self.topo[name].replicas
                self._k8s(name, "ScalingReplicaSet", "Normal", t, kind="Deployment",
                          message=f"Scaled down replica set {name} to {n}")
        self.entry_cap = None
        return left

    def submit(self, action: SreAction, now: float) -> bool:
        """Schedule an ``sre-actions`` event received at sample time ``now``.

        Returns False for an idempotency key already seen (never applied twice).
        """
        if action.idempotency_key in self._keys:
            return False
        self._keys.add(action.idempotency_key)
        self.schedule(Change.of(action, self.targets_of(action)), now)
        return True

    def schedule(self, change: Change, now: float, delay: float | None = None) -> float:
        """Apply ``change`` after its execution delay (default: its action's); return when."""
        due = now + (ACTION_DELAY.get(change.action, 60.0) if delay is None else delay)
        self._seq += 1
        heapq.heappush(self._pending, (due, self._seq, change))
        return due

    def refuse(self, action: SreAction, t: float, verdict: str) -> None:
        """Record an action the executor held back (blocked, rate limited, skipped)."""
        self._keys.add(action.idempotency_key)
        self.ledger.append(Outcome(
            time=t, action=action.step.action, targets=tuple(sorted(self.targets_of(action))),
            action_id=action.action_id, plan_id=action.plan_id, incident_id=action.incident_id,
            fault=None, effect="refused", policy=action.policy,
            approved_by=tuple(action.approved_by), verdict=verdict[:200]))

    # ------------------------------------------------------------ one step
    def step(self) -> Tick:
        t, dt = self.t, self.step_seconds
        while self._script and self._script[0][0] < t + dt:
            when, _, fn = heapq.heappop(self._script)
            fn(self, max(when, t))
        outcomes = []
        while self._pending and self._pending[0][0] < t + dt:
            when, _, change = heapq.heappop(self._pending)
            outcomes.append(self._apply(change, max(when, t)))
        active = [f for f in self.faults if f.active(t)]
        effects: dict[str, Effect] = {}
        mix: dict[str, float] = {}
        for f in active:
            for name, e in f.effects(t).items():
                effects[name] = effects[name].merge(e) if name in effects else e
            if isinstance(f, TrafficSurge):
                mix = f.call_mix(t)
        traffic = seasonal(t) * self.bursts.step(t, dt)
        ready = {n: fac for n, (until, fac) in self._dips.items() if t < until}
        vit = vitals(self.topo, traffic, effects, self.replicas, ready, mix, self.entry_cap)
        self._update_lag(vit, dt)
        node_eff = {k[5:]: e for k, e in effects.items() if k.startswith("node:")}
        samples = self.catalog.sample(t, vit, node_eff, self._lag)
        tick = Tick(t=t, samples=samples, outcomes=outcomes)
        self._logs(t, vit, active)
        for f in active:
            for ev in f.k8s(t, dt):
                svc = ev.pop("service", f.target)
                self._k8s(svc, ev.pop("reason"), ev.pop("type", "Warning"), t, **ev)
        self._benign_deploy(t, dt)
        tick.alerts = self.rules.step(t, samples)
        for a in (*tick.alerts, *self._queued["alerts"]):
            a.event_id = self._id()
        tick.health = {c.name: self._healthy(c.name, vit[c.name]) for c in self.topo}
        for key in ("logs", "k8s", "deploys", "alerts"):
            getattr(tick, key).extend(self._queued[key])
            self._queued[key] = []
        self.t = t + dt
        return tick

    def _healthy(self, name: str, v: Vitals) -> bool:
        c = self.topo[name]
        return (v.up >= 0.99 and v.error <= max(0.02, 5 * c.error) and v.p99 <= 3 * c.p99
                and v.memory < 0.9 and (v.pool or 0.0) < 0.95 and (v.disk or 0.0) < 0.95)

    def _update_lag(self, vit: dict[str, Vitals], dt: float) -> None:
        source = {"orders": "order-service", "trades": "matching-engine",
                  "positions": "matching-engine"}
        for c in self.topo:
            if not c.consumes:
                continue
            v = vit[c.name]
            inflow = vit[source[c.consumes]].served
            cap = 0.0 if v.up == 0.0 else v.ready_replicas * c.consume_capacity
            lag = self._lag.get(c.name, 0.0) + (inflow - cap) * dt
            self._lag[c.name] = max(0.0, lag)

    # ------------------------------------------------------------ the closed loop
    def targets_of(self, action: SreAction) -> set[str]:
        """Component / node / instance names an action's target refers to."""
        return self.targets_of_step(action.step)

    def targets_of_step(self, step: ActionStep) -> set[str]:
        """Component / node / instance names a step's target refers to."""
        tg = step.target
        raw = {tg.name, *(tg.service and [tg.service] or [])}
        raw |= {v for k, v in step.params.items()
                if k in _TARGET_PARAMS and isinstance(v, str)}
        names = set(raw)
        for r in raw:
            for c in self.topo:
                if r == c.name or r.startswith(c.name + "-"):
                    names.add(c.name)
        return names

    def _apply(self, change: Change, t: float) -> Outcome:
        name, targets = change.action, set(change.targets)
        best, which = "none", None
        for f in self.faults:
            if not f.active(t) or not change.reacts:
                continue
            eff = f.react(name, targets, t)
            if _RANK[eff] > _RANK[best]:
                best, which = eff, f.name
        self._platform_effect(name, targets, change.params, t)
        out = Outcome(time=t, action=change.label or name, targets=tuple(sorted(targets)),
                      action_id=change.action_id, plan_id=change.plan_id,
                      incident_id=change.incident_id, fault=which, effect=best,
                      policy=change.policy, approved_by=change.approved_by)
        self.ledger.append(out)
        return out

    def _platform_effect(self, name: str, targets: set[str], params: dict[str, Any],
                         t: float) -> None:
        services = sorted(n for n in targets if n in self.topo)
        if name == "set_replicas":  # a rollback of a scale: back to what it was
            for svc in services:
                self.replicas[svc] = int(params["replicas"])
                self._k8s(svc, "ScalingReplicaSet", "Normal", t, kind="Deployment",
                          message=f"Scaled replica set {svc} to {self.replicas[svc]}")
        elif name == "disable_rate_limit":
            self.entry_cap = None
        elif name == "scale":
            for svc in services:
                cur = self.replicas[svc]
                want = next((int(params[k]) for k in ("replicas", "max_replicas", "target")
                             if isinstance(params.get(k), int | float)), cur * 4)
                self.replicas[svc] = max(cur, min(want, 64))
                self._k8s(svc, "ScalingReplicaSet", "Normal", t, kind="Deployment",
                          message=f"Scaled up replica set {svc} to {self.replicas[svc]}")
        elif name == "enable_rate_limit":
            mult = params.get("multiple")
            self.entry_cap = float(mult) if isinstance(mult, int | float) and mult > 0 else 4.0
        elif name == "restart_pod":
            for svc in services:
                n = self.replicas[svc]
                self._dips[svc] = (t + 60.0, (n - 1) / n if n > 1 else 0.0)
                pod = self.topo[svc].pods(n)[0] if self.topo[svc].kind == "service" else f"{svc}-0"
                self._k8s(svc, "Killing", "Normal", t, name=pod,
                          message=f"Stopping container {svc}")
        elif name == "rollout_restart":
            for svc in services:
                self._k8s(svc, "ScalingReplicaSet", "Normal", t, kind="Deployment",
                          message=f"Scaled up replica set {svc} to {self.replicas[svc]} "
                                  "(restartedAt annotation)")
        elif name == "rollout_undo":
            for svc in services:
                self._rollback(svc, t, author="sre-agent")
        elif name == "reboot_instance":
            for node in self.topo.nodes.values():
                if targets & {node.name, node.instance_id}:
                    for svc in self.topo.on_node(node.name):
                        share = self.topo[svc].nodes.count(node.name) / len(self.topo[svc].nodes)
                        self._dips[svc] = (t + 120.0, 1.0 - share)
        elif name in ("clear_cache", "run_job"):
            for svc in services:
                self._log(svc, "info", f"cache cleanup job finished: freed {self.rng.randrange(20, 90)}"
                                       " GiB on /data", t)

    # ------------------------------------------------------------ event builders
    def _id(self) -> str:
        self._seq += 1
        return f"sim{self.seed}-{self._seq:09d}"

    def _log(self, svc: str, level: str, message: str, t: float) -> None:
        pods = self.topo.pod_names(svc)
        pod = pods[self.rng.randrange(len(pods))]
        self._queued["logs"].append(LogRecord(
            event_id=self._id(), time=_when(t), service=svc, level=level, message=message,
            labels={"namespace": "trading" if self.topo[svc].kind == "service" else "data",
                    "pod": pod}))

    def _k8s(self, svc: str, reason: str, type_: str, t: float, kind: str = "Pod",
             name: str | None = None, message: str = "", count: int = 1) -> None:
        if name is None:
            name = svc if kind == "Deployment" else self.topo.pod_names(svc)[0] \
                if svc in self.topo else svc
        ns = "" if kind == "Node" else ("trading" if svc not in self.topo
                                        or self.topo[svc].kind == "service" else "data")
        self._queued["k8s"].append(K8sEvent(
            event_id=self._id(), time=_when(t), namespace=ns or "default", kind=kind, name=name,
            service=None if kind == "Node" else svc, reason=reason, type=type_,  # type: ignore[arg-type]
            message=message, count=count))

    def deploy(self, svc: str, t: float, version: str, change_type: str = "deploy",
               message: str = "", author: str = "ci@exchange.example") -> DeployEvent:
        """Emit an ArgoCD-shaped deploy (or config change) of ``svc`` at ``t``."""
        prev = self.versions[svc][-1]
        self.versions[svc].append(version)
        ev = DeployEvent(
            event_id=self._id(), time=_when(t), app=f"{svc}-prod", service=svc,
            namespace="trading", revision=_sha(svc, version), previous_revision=_sha(svc, prev),
            sync_status="Synced", health_status="Healthy",
            images=[f"registry.exchange.example/trading/{svc}:{version}"], author=author,
            change_type=change_type, message=message or f"release {svc} {version}",  # type: ignore[arg-type]
        )
        self._queued["deploys"].append(ev)
        self._k8s(svc, "ScalingReplicaSet", "Normal", t, kind="Deployment",
                  message=f"Scaled up replica set {svc} to {self.replicas[svc]}")
        return ev

    def _rollback(self, svc: str, t: float, author: str) -> None:
        hist = self.versions[svc]
        if len(hist) < 2:
            return
        bad, good = hist[-1], hist[-2]
        hist.append(good)
        self._queued["deploys"].append(DeployEvent(
            event_id=self._id(), time=_when(t), app=f"{svc}-prod", service=svc,
            namespace="trading", revision=_sha(svc, good), previous_revision=_sha(svc, bad),
            sync_status="Synced", health_status="Healthy",
            images=[f"registry.exchange.example/trading/{svc}:{good}"], author=author,
            change_type="rollback", message=f"rollback {svc} {bad} -> {good}"))

    def _benign_deploy(self, t: float, dt: float) -> None:
        draw = self.rng.random()
        pick = self.rng.randrange(1000)
        if draw >= self.deploys_per_day * dt / 86400.0:
            return
        services = [c.name for c in self.topo if c.kind == "service"]
        svc = services[pick % len(services)]
        major, minor, patch = self.versions[svc][-1][1:].split(".")
        version = f"v{major}.{minor}.{int(patch) + 1}"
        self.deploy(svc, t, version, message=f"chore: bump {svc} dependencies ({version})")

    def _logs(self, t: float, vit: dict[str, Vitals], active: list[Fault]) -> None:
        own = {f.target: f.templates for f in active if f.templates}
        for c in self.topo:
            v = vit[c.name]
            if v.up == 0.0:
                continue
            for level, msg in self.text.chatter(c.name, self.log_lines):
                self._log(c.name, level, msg, t + self.rng.uniform(0, self.step_seconds))
            # one error line per ~500 failed requests, at most 12 per step
            expected = v.error * v.rps * self.step_seconds / 500.0
            n = min(12, int(expected) + (self.rng.random() < expected % 1))
            total = sum(v.error_sources.values()) or 1.0
            for _ in range(n):
                pick = self.rng.random() * total
                src = "self"
                for s, share in v.error_sources.items():
                    pick -= share
                    if pick <= 0:
                        src = s
                        break
                level, msg = self._error_line(c.name, src, v, own.get(c.name))
                self._log(c.name, level, msg, t + self.rng.uniform(0, self.step_seconds))
            if v.slow_callee and self.rng.random() < 0.7:
                level, tpl = CALLER_TEMPLATES["slow"]
                self._log(c.name, level, self.text.render(tpl, callee=v.slow_callee), t + 1.0)

    def _error_line(self, svc: str, src: str, v: Vitals,
                    own: list[tuple[str, str]] | None) -> tuple[str, str]:
        if src == "self":
            if own:
                level, tpl = own[self.rng.randrange(len(own))]
                return level, self.text.render(tpl)
            if self.topo[svc].kind != "service":
                return "error", self.text.render("client connection reset by peer ip={ip}")
            return self.text.background()
        kind = "down" if src == v.down_callee else "error"
        level, tpl = CALLER_TEMPLATES[kind]
        ip, port = ADDRESSES.get(src, ("10.0.2.15", 8080))
        return level, self.text.render(tpl, callee=src, ip=ip, port=port)


def _sha(svc: str, version: str) -> str:
    return hashlib.sha1(f"{svc}@{version}".encode()).hexdigest()[:12]
