"""YAML playbooks (Robusta-style): root cause -> ordered, verified, reversible steps.

A playbook file holds one playbook (a mapping) or several (``playbooks: [...]``)::

    name: bad-deploy-rollback
    priority: 10                      # lower runs first among matching playbooks
    triggers:
      - on_root_cause:
          cause_types: [bad_deploy]
          services: ["*"]             # shell globs on the hypothesis' service
          min_confidence: 0.5
    actions:
      - action: rollout_undo
        target: {kind: deployment, name: "{service}"}
        risk: 0.45
        prechecks: [{previous_revision: true}]
        verify: {check: anomaly_cleared, metric: http_error_ratio, within: 300}
        rollback: restore_snapshot

Every file is validated with pydantic when the library is loaded; the first error
is raised as :class:`PlaybookError` naming the file and the field. Targets are
templates over the hypothesis' context (``{service}``, ``{namespace}``, ``{pod}``,
``{cause_type}``, ``{incident_id}``); a playbook whose template needs a variable the
context lacks does not apply, and the next matching playbook is tried.

Examples
--------
>>> lib = PlaybookLibrary.load()
>>> pb, steps = lib.plan_for("bad_deploy", "checkout", 0.9, {"namespace": "shop"})
>>> pb.name, steps[0].action, steps[0].target.ref()
('bad-deploy-rollback', 'rollout_undo', 'deployment/shop/checkout')
>>> try:
...     Playbook.parse({"name": "x", "triggers": [], "actions": []}, "x.yaml")
... except PlaybookError as exc:
...     print(exc)
x.yaml: triggers: List should have at least 1 item after validation, not 0
"""

from __future__ import annotations

import fnmatch
import logging
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from ..schemas import ActionStep, Target

__all__ = [
    "ACTIONS",
    "DEFAULT_DIR",
    "ActionInfo",
    "Playbook",
    "PlaybookError",
    "PlaybookLibrary",
]

log = logging.getLogger(__name__)

#: the packaged default playbooks
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "playbooks"

Kind = Literal["pod", "deployment", "statefulset", "hpa", "ec2", "rds", "job", "service"]


#: most steps in one plan (a playbook's own, and with ``for_each: peers`` expanded)
MAX_STEPS = 10


class PlaybookError(ValueError):
    """A playbook file that cannot be used; the message names file and field."""


@dataclass(frozen=True)
class ActionInfo:
    kinds: frozenset[str]
    risk: float
    rollback: str
    doc: str


#: the executor's verb vocabulary: allowed target kinds, default risk and rollback
ACTIONS: dict[str, ActionInfo] = {
    "restart_pod": ActionInfo(frozenset({"pod"}), 0.2, "none", "delete the pod; its controller recreates it"),
    "rollout_restart": ActionInfo(frozenset({"deployment", "statefulset"}), 0.25, "none",
                                  "patch the restartedAt template annotation"),
    "scale": ActionInfo(frozenset({"deployment", "statefulset"}), 0.25, "restore_snapshot",
                        "set replicas (params: replicas or factor, max_replicas; "
                        "size_to: demand, headroom, max_factor)"),
    "set_hpa_bounds": ActionInfo(frozenset({"hpa"}), 0.2, "restore_snapshot",
                                 "patch HPA min/max replicas"),
    "rollout_undo": ActionInfo(frozenset({"deployment"}), 0.45, "restore_snapshot",
                               "re-apply the previous ReplicaSet revision's pod template"),
    "run_job": ActionInfo(frozenset({"job"}), 0.25, "none",
                          "create a Job from a configured CronJob (e.g. clear a cache)"),
    "enable_rate_limit": ActionInfo(frozenset({"service"}), 0.45, "restore_snapshot",
                                    "set a key in the rate-limit ConfigMap the gateway reads"),
    "reboot_instance": ActionInfo(frozenset({"ec2"}), 0.5, "none", "EC2 RebootInstances"),
    "rds_failover": ActionInfo(frozenset({"rds"}), 0.7, "none",
                               "Aurora FailoverDBCluster, or Multi-AZ reboot with failover"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------ params per action
class _ScaleParams(_Strict):
    replicas: int | None = Field(default=None, ge=0, le=1000)
    factor: float | None = Field(default=None, gt=0, le=10)
    max_replicas: int = Field(default=50, ge=1, le=1000)
    #: ``demand``: the planner sizes the step to the load the diagnosis measured
    #: (processors/sizing.py); ``factor`` is then the floor when nothing was measured
    size_to: Literal["demand"] | None = None
    #: replicas per unit of demand above the level before the incident (1.0: the same
    #: utilisation as before)
    headroom: float = Field(default=1.0, ge=1.0, le=3.0)
    #: the largest change one demand-sized step makes (x current replicas)
    max_factor: float = Field(default=10.0, gt=1.0, le=10.0)

    @model_validator(mode="after")
    def _one(self) -> _ScaleParams:
        if (self.replicas is None) == (self.factor is None):
            raise ValueError("give exactly one of replicas or factor")
        if self.size_to and self.factor is None:
            raise ValueError("size_to needs factor (the floor when no load was measured)")
        return self


class _HpaParams(_Strict):
    min_replicas: int | None = Field(default=None, ge=1, le=1000)
    max_replicas: int | None = Field(default=None, ge=1, le=1000)


class _UndoParams(_Strict):
    to_revision: int | None = Field(default=None, ge=1)


class _JobParams(_Strict):
    from_cronjob: str | None = None


class _RateParams(_Strict):
    configmap: str = "rate-limits"
    key: str = "{service}"
    value: str = Field(min_length=1)


class _RdsParams(_Strict):
    cluster: bool = True
    target_instance: str | None = None


class _NoParams(_Strict):
    pass


_PARAMS: dict[str, type[_Strict]] = {
    "scale": _ScaleParams, "set_hpa_bounds": _HpaParams, "rollout_undo": _UndoParams,
    "run_job": _JobParams, "enable_rate_limit": _RateParams, "rds_failover": _RdsParams,
}


# ------------------------------------------------------------------ the playbook model
class RootCauseTrigger(_Strict):
    cause_types: list[str] = Field(min_length=1)
    services: list[str] = Field(default_factory=lambda: ["*"])
    #: globs on context variables (namespace, severity ...)
    labels: dict[str, str] = Field(default_factory=dict)
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)


class Trigger(_Strict):
    on_root_cause: RootCauseTrigger


class TargetSpec(_Strict):
    kind: Kind
    name: str = Field(min_length=1)
    namespace: str = "{namespace}"


class VerifySpec(_Strict):
    #: anomaly_cleared: no open anomaly on ``metric`` of the service;
    #: rollout_complete: the workload reports all replicas updated and available
    check: Literal["anomaly_cleared", "rollout_complete"] = "anomaly_cleared"
    metric: str | None = None
    within: float = Field(default=300.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _metric(self) -> VerifySpec:
        if self.check == "anomaly_cleared" and not self.metric:
            raise ValueError("anomaly_cleared needs a metric")
        return self


class StepSpec(_Strict):
    action: str
    target: TargetSpec
    params: dict[str, Any] = Field(default_factory=dict)
    risk: float | None = Field(default=None, ge=0.0, le=1.0)
    prechecks: list[dict[str, Any]] = Field(default_factory=list)
    verify: VerifySpec | None = None
    rollback: Literal["restore_snapshot", "none"] | None = None
    #: ``peers``: the step acts on the hypothesis' service and then, once each, on every
    #: other service the same diagnosis names with the same cause (its *peers*: the
    #: workloads one node evicted, the callees one surge reached). One cause shared by
    #: several services is fixed only when each of them is acted on.
    for_each: Literal["peers"] | None = None

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        action = str(info.data.get("action"))
        if action not in ACTIONS:
            return value  # reported by _known
        model = _PARAMS.get(action, _NoParams)
        try:
            model.model_validate(value)
        except ValidationError as exc:
            e = exc.errors(include_url=False)[0]
            where = ".".join(map(str, e["loc"]))
            msg = e["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where + ': ' if where else ''}{msg}") from None
        return value

    @model_validator(mode="after")
    def _known(self) -> StepSpec:
        info = ACTIONS.get(self.action)
        if info is None:
            raise ValueError(f"unknown action {self.action!r}; use one of {sorted(ACTIONS)}")
        if self.target.kind not in info.kinds:
            raise ValueError(f"action {self.action} acts on {sorted(info.kinds)}, "
                             f"not {self.target.kind!r}")
        return self


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._\-]*$", max_length=100)
    description: str = ""
    enabled: bool = True
    priority: int = 100
    triggers: list[Trigger] = Field(min_length=1)
    actions: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)
    #: set by the loader, not in the file
    source: str = ""

    @classmethod
    def parse(cls, data: Any, source: str, where: str = "") -> Playbook:
        """Validate one playbook mapping; raise :class:`PlaybookError`."""
        if not isinstance(data, Mapping):
            raise PlaybookError(f"{source}: {where or '<root>'}: a playbook must be a mapping")
        try:
            return cls.model_validate({**data, "source": source})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"])
            loc = (where + "." + loc if where else loc).replace(".[", "[")
            msg = err["msg"].removeprefix("Value error, ")
            raise PlaybookError(f"{source}: {loc or '<root>'}: {msg}") from None

    def matches(self, cause_type: str, service: str, confidence: float,
                context: Mapping[str, str]) -> bool:
        """Does any trigger fire for this hypothesis?"""
        if not self.enabled:
            return False
        for t in self.triggers:
            r = t.on_root_cause
            if cause_type not in r.cause_types or confidence < r.min_confidence:
                continue
            if not any(fnmatch.fnmatchcase(service, g) for g in r.services):
                continue
            if all(fnmatch.fnmatchcase(str(context.get(k, "")), g) for k, g in r.labels.items()):
                return True
        return False

    def render(self, context: Mapping[str, str],
               peers: Sequence[Mapping[str, str]] = ()) -> list[ActionStep]:
        """Concrete steps for ``context``; ``KeyError``/``ValueError`` if it does not fit.

        A ``for_each: peers`` step is rendered for ``context`` and then for each
        context of ``peers`` (another service's; a peer the step does not fit, or one
        rendering a target already in the plan, is left out), up to MAX_STEPS in all.
        """
        steps: list[ActionStep] = []
        for spec in self.actions:
            steps.append(_step(spec, context))
            if spec.for_each != "peers":
                continue
            seen = {s.target.ref() for s in steps}
            for peer in peers:
                if len(steps) >= MAX_STEPS:
                    break
                try:
                    extra = _step(spec, peer)
                except (KeyError, ValueError):
                    continue
                if extra.target.ref() not in seen:
                    seen.add(extra.target.ref())
                    steps.append(extra)
        return steps[:MAX_STEPS]


def _step(spec: StepSpec, context: Mapping[str, str]) -> ActionStep:
    info = ACTIONS[spec.action]
    target = Target(kind=spec.target.kind, name=_fill(spec.target.name, context),
                    namespace=_fill(spec.target.namespace, context),
                    service=context.get("service"))
    params = {k: _fill(v, context) if isinstance(v, str) else v for k, v in spec.params.items()}
    return ActionStep(
        action=spec.action, target=target, params=params,
        risk=info.risk if spec.risk is None else spec.risk,
        verify=spec.verify.model_dump() if spec.verify else None,
        rollback=spec.rollback or info.rollback,
        prechecks=[dict(p) for p in spec.prechecks],
    )


def _fill(template: str, context: Mapping[str, str]) -> str:
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    missing = [n for n in names if not context.get(n)]
    if missing:
        raise KeyError(f"missing variable {missing[0]!r}")
    return template.format_map(dict(context))


def _read(path: Path) -> list[Playbook]:
    src = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlaybookError(f"{src}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{src}: not valid YAML: {exc}") from None
    if isinstance(data, Mapping) and "playbooks" in data:
        items = data["playbooks"]
        if not isinstance(items, list):
            raise PlaybookError(f"{src}: playbooks: must be a list")
        return [Playbook.parse(item, src, f"playbooks[{i}]") for i, item in enumerate(items)]
    return [Playbook.parse(data, src)]


class PlaybookLibrary:
    """All playbooks, ordered by priority then name."""

    def __init__(self, playbooks: Iterable[Playbook]) -> None:
        self.playbooks = sorted(playbooks, key=lambda p: (p.priority, p.name))

    @classmethod
    def load(cls, extra_dir: Path | None = None, defaults: bool = True) -> PlaybookLibrary:
        """Load the packaged defaults, then ``extra_dir`` (same name overrides a default)."""
        by_name: dict[str, Playbook] = {}
        dirs = ([DEFAULT_DIR] if defaults else []) + ([Path(extra_dir)] if extra_dir else [])
        for d in dirs:
            if not d.is_dir():
                raise PlaybookError(f"{d}: playbooks directory not found")
            seen: dict[str, str] = {}
            for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
                for pb in _read(path):
                    if pb.name in seen:
                        raise PlaybookError(f"{path}: name: duplicate playbook {pb.name!r} "
                                            f"(also in {seen[pb.name]})")
                    seen[pb.name] = str(path)
                    by_name[pb.name] = pb
        log.info("loaded %d playbooks from %s", len(by_name), ", ".join(map(str, dirs)))
        return cls(by_name.values())

    def __len__(self) -> int:
        return len(self.playbooks)

    def cause_types(self) -> set[str]:
        return {c for p in self.playbooks for t in p.triggers for c in t.on_root_cause.cause_types}

    def plan_for(self, cause_type: str, service: str, confidence: float,
                 context: Mapping[str, str], peers: Mapping[str, Mapping[str, str]] | None = None,
                 ) -> tuple[Playbook, list[ActionStep]] | None:
        """The first matching playbook whose targets render for ``context``.

        ``peers``: other services with the same cause in the diagnosis -> their
        contexts, for ``for_each: peers`` steps.
        """
        ctx = {"service": service, "cause_type": cause_type, **context}
        others = [{**pc, "service": name, "cause_type": cause_type}
                  for name, pc in (peers or {}).items() if name != service]
        for pb in self.playbooks:
            if not pb.matches(cause_type, service, confidence, ctx):
                continue
            try:
                return pb, pb.render(ctx, others)
            except (KeyError, ValueError) as exc:
                log.debug("playbook %s does not fit %s/%s: %s", pb.name, cause_type, service, exc)
        return None
