"""From an RCA result to an action plan: playbook, risk score and policy.

Two pure steps around one I/O step done by the stream: :meth:`Planner.draft`
picks the hypothesis and renders its playbook's steps; the stream observes each
step's target (uid, revision, replicas); :meth:`Planner.finalize` records what
the plan assumes about the targets, scores the risk and applies the policy.

Examples
--------
>>> from datetime import UTC, datetime
>>> from sre_agent.config import ActionSettings
>>> from sre_agent.schemas import Hypothesis, RcaResult
>>> planner = Planner.from_settings(ActionSettings())
>>> rca = RcaResult(incident_id="inc-1", severity="critical", services=["checkout"],
...     hypotheses=[Hypothesis(cause_type="bad_deploy", service="checkout", confidence=0.85,
...                            summary="v2 raised errors")])
>>> draft = planner.draft(rca)
>>> draft.playbook.name, draft.steps[0].target.ref()
('bad-deploy-rollback', 'deployment/default/checkout')
>>> plan = planner.finalize(draft, {0: {"exists": True, "uid": "d1", "revision": "2",
...                                     "replicas": 3}}, datetime(2025, 11, 13, tzinfo=UTC))
>>> plan.risk_tier, plan.policy, plan.steps[0].target.uid, plan.steps[0].expect
('MEDIUM', 'ONE_APPROVAL', 'd1', {'revision': '2'})
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..config import ActionSettings
from ..schemas import ActionPlan, ActionStep, Hypothesis, RcaResult
from .playbooks import Playbook, PlaybookLibrary
from .policy import PolicyDecision, PolicyEngine
from .risk import RiskScorer
from .sizing import Sizing, size_scale

__all__ = ["Draft", "Planner", "context_of", "plan_id_for", "superseded_reason"]

_REF = re.compile(r"^(pod|ec2|rds|deployment|node)/(?:([a-z0-9][a-z0-9-]*)/)?([A-Za-z0-9][A-Za-z0-9._-]*)$")
_VAR = {"pod": "pod", "ec2": "instance_id", "rds": "db_cluster", "deployment": "deployment",
        "node": "node"}


def plan_id_for(incident_id: str, playbook: str, refs: list[str]) -> str:
    """Stable plan id of (incident, playbook, targets).

    A redelivered RCA result, or a later RCA revision of the same incident that
    leads to the same actions, yields the same plan: it is not posted twice.
    """
    key = "|".join([incident_id, playbook, *refs])
    return f"plan-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


#: plan states in which a plan still waits for people (or, BLOCKED, shows a diagnosis):
#: the ones a changed diagnosis makes stale
OPEN_STATES = frozenset({"pending", "blocked"})
#: hypotheses this close to the most confident one are as likely as it; lower ones are not
#: acted on (:meth:`Planner.draft`). A margin, not equality: confidences are rounded
#: scores in [0, 1], and two hypotheses a few hundredths apart are a tie in practice.
LEAD_MARGIN = 0.05


def superseded_reason(previous: ActionPlan, rca: RcaResult, new: ActionPlan | None,
                      min_confidence: float = 0.0) -> str | None:
    """Why a newer RCA result of ``previous``'s incident makes ``previous`` stale, if it does.

    A plan answers one diagnosis. When a later result of the same incident leads to
    another plan (another playbook or other targets: another id), or its leading
    hypothesis names another cause or service than the one the plan acts on with at
    least ``min_confidence`` (also when no playbook covers it), approving the old plan
    would act on a diagnosis that no longer stands. The same diagnosis again (a
    refinement that keeps the plan) changes nothing, and so does a result without a
    confident hypothesis (a revision that knows less does not undo a diagnosis).

    >>> from sre_agent.schemas import Hypothesis
    >>> old = ActionPlan(plan_id="p1", incident_id="i", risk_score=0.4, risk_tier="MEDIUM",
    ...                  policy="ONE_APPROVAL", cause_type="bad_deploy", service="api")
    >>> res = lambda cause, svc: RcaResult(incident_id="i", hypotheses=[Hypothesis(
    ...     cause_type=cause, service=svc, confidence=0.8, summary="")])
    >>> superseded_reason(old, res("bad_deploy", "api"), old) is None
    True
    >>> superseded_reason(old, res("memory_leak", "wallet"), None, 0.6)
    'diagnosis changed: bad_deploy on api -> memory_leak on wallet (no plan follows from it)'
    """
    if previous.incident_id != rca.incident_id:
        return None
    top = max(rca.hypotheses, key=lambda h: h.confidence, default=None)
    was = f"{previous.cause_type} on {previous.service}"
    now = f"{top.cause_type} on {top.service}" if top is not None else "no hypothesis"
    if new is not None:
        if new.plan_id == previous.plan_id:
            return None
        return f"diagnosis changed: {was} -> {new.cause_type} on {new.service} (plan {new.plan_id})"
    if top is None or top.confidence < min_confidence \
            or (top.cause_type, top.service) == (previous.cause_type, previous.service):
        return None
    return f"diagnosis changed: {was} -> {now} (no plan follows from it)"


def context_of(hyp: Hypothesis, settings: ActionSettings) -> dict[str, str]:
    """Template variables for a hypothesis: namespace, and ids found in evidence refs.

    Evidence refs like ``pod/shop/checkout-7f9c``, ``ec2/i-0abc``, ``rds/orders-db``
    fill ``{pod}`` (and ``{namespace}``), ``{instance_id}``, ``{db_cluster}``; evidence
    that the service's callers cannot reach it (ref ``unreachable/<service>``) sets the
    label ``reachable=no`` (playbooks match it with ``labels``).
    """
    ns = settings.default_namespace
    for pattern, value in settings.namespaces.items():
        if fnmatch.fnmatchcase(hyp.service, pattern):
            ns = value
            break
    ctx = {"namespace": ns}
    if any(e.ref == f"unreachable/{hyp.service}" for e in hyp.evidence):
        ctx["reachable"] = "no"
    for item in sorted(hyp.evidence, key=lambda e: -e.weight):
        m = _REF.match(item.ref or "")
        if not m:
            continue
        kind, namespace, name = m.groups()
        var = _VAR[kind]
        if var not in ctx:
            ctx[var] = name
            if kind == "pod" and namespace:
                ctx["namespace"] = namespace
    return ctx


def _sized_from(previous: ActionPlan | None, incident_id: str, step: ActionStep,
                current: int) -> int:
    """The replicas a demand-sized scale of ``step``'s target is sized from: those the
    incident's earlier plan sized the same target from, if fewer than now (its own
    scale-out since), else the replicas running now."""
    if previous is None or previous.incident_id != incident_id:
        return current
    ref = step.target.ref()
    for ps in previous.steps:
        before = ps.params.get("replicas_before")
        if ps.action == "scale" and ps.target.ref() == ref and isinstance(before, int):
            return max(1, min(current, before))
    return current


@dataclass
class Draft:
    rca: RcaResult
    hypothesis: Hypothesis
    playbook: Playbook
    steps: list[ActionStep]
    context: dict[str, str] = field(default_factory=dict)


class Planner:
    def __init__(self, library: PlaybookLibrary, scorer: RiskScorer, policy: PolicyEngine,
                 settings: ActionSettings) -> None:
        self.library = library
        self.scorer = scorer
        self.policy = policy
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: ActionSettings) -> Planner:
        return cls(PlaybookLibrary.load(settings.playbooks_dir), RiskScorer(settings),
                   PolicyEngine(settings), settings)

    def draft(self, rca: RcaResult) -> Draft | None:
        """The most confident hypothesis that a playbook covers, with rendered steps.

        Only the leading diagnosis is acted on: hypotheses within :data:`LEAD_MARGIN` of
        the most confident one (as likely as it). When no playbook covers those — the
        RCA names a cause no playbook fixes, or ``unknown`` — there is no plan (the
        diagnosis goes to people): acting on a hypothesis the RCA itself ranks clearly
        lower (say, rate-limiting a neighbour at 0.52 when the leader, 0.90, is an
        unknown fault of another service) acts against the diagnosis.
        """
        ranked = sorted(rca.hypotheses, key=lambda h: -h.confidence)
        lead = ranked[0].confidence if ranked else 0.0
        for hyp in ranked:
            if hyp.confidence < self.settings.min_confidence or lead - hyp.confidence > LEAD_MARGIN:
                break
            ctx = context_of(hyp, self.settings)
            ctx.update({"incident_id": rca.incident_id, "severity": rca.severity})
            peers = self._peers(rca, hyp)
            found = self.library.plan_for(hyp.cause_type, hyp.service, hyp.confidence, ctx,
                                          peers)
            if found:
                pb, steps = found
                return Draft(rca, hyp, pb, steps, ctx)
        return None

    def _peers(self, rca: RcaResult, hyp: Hypothesis) -> dict[str, dict[str, str]]:
        """Other services the diagnosis blames on the same cause -> their contexts.

        One node's pressure evicts pods of several workloads; one surge reaches several
        services. The RCA then ranks one hypothesis of that cause per service, and the
        leader alone does not fix the others (each evicted workload must be
        rescheduled). Peers are hypotheses of ``hyp``'s cause type at or above
        ``min_confidence``, most confident first; only ``for_each: peers`` steps use them.
        """
        out: dict[str, dict[str, str]] = {}
        for h in sorted(rca.hypotheses, key=lambda h: -h.confidence):
            if (h.cause_type != hyp.cause_type or h.service == hyp.service or h.service in out
                    or h.confidence < self.settings.min_confidence):
                continue
            ctx = context_of(h, self.settings)
            ctx.update({"incident_id": rca.incident_id, "severity": rca.severity})
            out[h.service] = ctx
        return out

    @staticmethod
    def _sizing(step: ActionStep, current: int, rca: RcaResult, hyp: Hypothesis) -> Sizing:
        """A ``size_to: demand`` scale step sized to the load the diagnosis measured on its
        target's service (the evidence of its hypotheses: the leader's, or a peer's for a
        ``for_each: peers`` step)."""
        svc = step.target.service or hyp.service
        return size_scale(current, step.params,
                          [e for h in rca.hypotheses if h.service == svc for e in h.evidence])

    @staticmethod
    def _sized_params(step: ActionStep, current: int, base: int, s: Sizing) -> dict[str, Any]:
        out = {k: v for k, v in step.params.items() if k not in ("factor", "replicas")}
        want = max(s.replicas, current)  # never a scale-in
        # a factor, not a replica count: applied to the replicas running when it executes
        # (ceil(current * factor) == the sized count: half a replica below it)
        out["factor"] = round((want - 0.5) / max(current, 1), 4)
        out["replicas_before"] = base
        out["replicas_after"] = want
        out["demand_ratio"] = s.ratio
        return out

    def finalize(self, draft: Draft, observed: Mapping[int, Mapping[str, Any]],
                 now: datetime, previous: ActionPlan | None = None) -> ActionPlan:
        """Score and decide; ``observed[i]`` is what the stream saw of step i's target.

        ``previous``: the incident's latest plan before this one. A demand-sized scale
        is sized from the replicas the incident's load was measured on: those its
        earlier plan sized from (``replicas_before``), not the replicas its own executed
        step left (sizing 4 -> 40 again from 40 would compound to 50).
        """
        rca, hyp = draft.rca, draft.hypothesis
        steps = []
        sizing: list[str] = []
        replicas = None
        for i, step in enumerate(draft.steps):
            obs = observed.get(i) or {}
            target = step.target.model_copy(update={"uid": obs.get("uid") or step.target.uid})
            expect = dict(step.expect)
            params = step.params
            if step.action == "rollout_undo" and obs.get("revision") is not None:
                expect["revision"] = str(obs["revision"])
            if obs.get("replicas") is not None:
                replicas = max(replicas or 0, int(obs["replicas"]))
                if step.action == "scale" and params.get("size_to") == "demand":
                    cur = int(obs["replicas"])
                    base = _sized_from(previous, rca.incident_id, step, cur)
                    sized = self._sizing(step, base, rca, hyp)
                    params = self._sized_params(step, cur, base, sized)
                    # the reader's account (plan evidence, not a param: series names
                    # come from telemetry)
                    sizing.append(f"scale {step.target.ref()} {base} -> {sized.replicas} "
                                  f"replicas" + (f" (now {cur})" if cur != base else "")
                                  + f": demand x{sized.ratio:g} ({sized.basis})"
                                  + (f", capped by {sized.capped}" if sized.capped else ""))
                    # the risk engine scores the replicas the step leaves running
                    replicas = max(replicas, int(params.get("replicas_after", 0)))
            steps.append(step.model_copy(update={"target": target, "expect": expect,
                                                 "params": params}))
        dependants = max(len(set(rca.services) - {hyp.service}), 0) if rca.services else None
        risk = self.scorer.score(steps, hyp.confidence, rca.severity, hyp.service, now,
                                 replicas=replicas, dependants=dependants)
        decision: PolicyDecision = self.policy.decide(risk.score, steps, hyp.service)
        return ActionPlan(
            plan_id=plan_id_for(rca.incident_id, draft.playbook.name,
                                [st.target.ref() for st in steps]),
            incident_id=rca.incident_id,
            playbook=draft.playbook.name,
            cause_type=hyp.cause_type,
            summary=hyp.summary,
            steps=steps,
            risk_score=risk.score,
            risk_tier=decision.tier,  # type: ignore[arg-type]
            policy=decision.policy,  # type: ignore[arg-type]
            risk_factors=risk.factors,
            protected=decision.protected,
            expires_at=now + timedelta(seconds=self.settings.approval_ttl_seconds),
            status=decision.status,  # type: ignore[arg-type]
            service=hyp.service,
            severity=rca.severity,
            confidence=hyp.confidence,
            evidence=[*sizing[:3],
                      *(e.summary for e in sorted(hyp.evidence, key=lambda e: -e.weight)[:5])],
            similar=[s.model_dump(mode="json") for s in rca.similar[:3]],
            policy_reason=decision.reason,
            time=now,
        )
