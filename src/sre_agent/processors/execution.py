"""The executor as a pure state machine: ``(state, event, now, rules) -> (state, effects)``.

State is per target (the ``executor_state`` table is keyed like ``sre-actions``):
recent action times (rate limit) and the idempotency keys seen. The agent feeds
events and carries out effects; each effect's outcome comes back as the next
event::

    Requested --verify, dedup, blocklist, rate limit--> Inspect
    Inspected --incident open, same object, pre-checks--> Claim
    Claimed   --not claimed before--> Act (dry run or real)
    Acted     --> Report (dry run, failed) | Verify (then the agent reports)
    Resumed   --a claim taken over from a stopped owner--> Inspect | Verify | Report

With PostgreSQL the durable claim is the work log (``claimed`` -> ``acting`` ->
``executed`` -> result) and the owner holds a lease on it; when the owner stops, a
worker takes the claim over and finishes it from the recorded state (:class:`Resumed`):
nothing done yet -> the action runs; done -> only verification and the result; stopped
during the call to the target -> the live object tells: changed means done, unchanged
means unknown, and an unknown outcome is reported failed, never repeated.

Every refusal is an :class:`Audit` plus a :class:`Report` (one ``action-results``
event). Nothing in the action is believed: :func:`verify_action` checks the
action's signature, the signed plan attached to it (policy recomputed, step
identical to the plan's) and the signed votes (quorum replayed, roles from
configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..schemas import ActionPlan, SreAction
from .approvals import Audit, VoterRoles, effective_policy, verify_quorum
from .policy import PolicyEngine, recent_actions
from .signing import Check, Keyring
from .verify import identity_problem, precheck_problems

__all__ = ["EFFECT_DELAY", "Act", "Acted", "Claim", "Claimed", "ExecRules", "Inspect", "Inspected",
           "Report", "Requested", "Resumed", "TargetState", "Verify", "Verdict", "not_caused",
           "step", "verify_action"]

MAX_DONE = 500  # idempotency keys remembered per target
ME = "executor"


@dataclass
class TargetState:
    times: list[float] = field(default_factory=list)
    done: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> TargetState:
        obj = obj or {}
        return cls(list(obj.get("times") or []), dict(obj.get("done") or {}))

    def to_json(self) -> dict[str, Any]:
        done = self.done
        if len(done) > MAX_DONE:
            done = dict(list(done.items())[-MAX_DONE:])
        return {"times": list(self.times), "done": done}


@dataclass(frozen=True)
class ExecRules:
    policy: PolicyEngine
    roles: VoterRoles
    keyring: Keyring
    dry_run: bool = True
    max_per_hour: int = 3
    require_open_incident: bool = True


@dataclass(frozen=True)
class Verdict:
    ok: bool
    #: "blocked" (never executable) or "unverified" (evidence missing or forged)
    kind: str = ""
    reason: str = ""
    approvers: tuple[str, ...] = ()


def verify_action(action: SreAction, raw: Mapping[str, Any], check: Check,
                  rules: ExecRules) -> Verdict:
    """May ``action`` run? From its signature and the signed evidence it carries."""
    if not check.ok:
        return Verdict(False, "unverified", f"action signature: {check.reason}")
    plan_raw = raw.get("plan")
    if not isinstance(plan_raw, Mapping):
        return Verdict(False, "unverified", "no signed plan attached")
    pcheck = rules.keyring.verify(plan_raw)
    if not pcheck.ok:
        return Verdict(False, "unverified", f"plan signature: {pcheck.reason}")
    try:
        plan = ActionPlan.model_validate(dict(plan_raw))
    except ValidationError:
        return Verdict(False, "unverified", "attached plan does not validate")
    if plan.plan_id != action.plan_id or plan.incident_id != action.incident_id:
        return Verdict(False, "unverified", "attached plan is another plan")
    i = action.step_index
    if not 0 <= i < len(plan.steps) or plan.steps[i].model_dump() != action.step.model_dump():
        return Verdict(False, "unverified", f"step {i} is not the plan's step {i}")
    prot = rules.policy.protected_match([action.step])
    if prot:
        return Verdict(False, "blocked", f"blocklist: {prot}")
    decision = effective_policy(plan, rules.policy)
    if decision.policy == "BLOCKED" or action.policy == "BLOCKED":
        return Verdict(False, "blocked", f"policy BLOCKED: diagnosis only ({decision.reason})")
    approved, why, approvers = verify_quorum(plan, decision.policy, list(raw.get("approvals") or []),
                                             rules.keyring, rules.roles)
    if not approved:
        return Verdict(False, "unverified", f"{decision.policy}: {why}")
    return Verdict(True, "", why, tuple(approvers))


# ---------------------------------------------------------------------------- attribution
#: seconds (event time) after an action before it can change its symptom at the earliest:
#: a container has to start, a rollout to replace a pod, a job to run. Floors per kind of
#: action, not per service: a symptom that cleared sooner cleared by itself
EFFECT_DELAY: dict[str, float] = {
    "restart_pod": 30.0, "rollout_restart": 60.0, "rollout_undo": 60.0, "scale": 60.0,
    "clear_cache": 5.0, "run_job": 30.0, "enable_rate_limit": 10.0,
    "reboot_instance": 120.0, "rds_failover": 60.0,
}
DEFAULT_EFFECT_DELAY = 30.0


def not_caused(action: str, open_at_act: bool, acted_at: float,
               cleared_at: float | None) -> str | None:
    """Why a passed ``anomaly_cleared`` verification is not the action's doing, or None.

    Verification credits the action (``verified=True``: the learning loop raises the
    cause's pattern and the playbook's success rate) only for a recovery the action can
    have caused: the symptom was still open when the action was carried out, and it
    cleared no sooner than the action could take effect (``EFFECT_DELAY``). A surge that
    faded by itself before the new replicas could serve, or an anomaly that was already
    resolved when the action ran, is reported ``succeeded`` but unverified (no credit).

    >>> not_caused("scale", True, 1000.0, 1100.0) is None
    True
    >>> not_caused("scale", True, 1000.0, 1020.0)
    'the symptom cleared 20 s after the action, before a scale can take effect (60 s): not credited to it'
    >>> not_caused("scale", False, 1000.0, None)
    'the symptom had cleared before the action was carried out: not credited to it'
    """
    if not open_at_act:
        return "the symptom had cleared before the action was carried out: not credited to it"
    delay = EFFECT_DELAY.get(action, DEFAULT_EFFECT_DELAY)
    if cleared_at is not None and cleared_at - acted_at < delay:
        return (f"the symptom cleared {max(0.0, cleared_at - acted_at):.0f} s after the action, "
                f"before a {action} can take effect ({delay:.0f} s): not credited to it")
    return None


# ---------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Requested:
    action: SreAction
    check: Check
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: the durable claim's status in PostgreSQL, if it has one
    claimed_before: str | None = None


@dataclass(frozen=True)
class Resumed:
    """A durable claim taken over after its owner stopped (its lease ran out)."""
    action: SreAction
    check: Check
    raw: Mapping[str, Any]
    #: the claim's recorded state: ``claimed``, ``acting`` or ``executed``
    claim: str
    snapshot: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True)
class Inspected:
    action: SreAction
    incident_status: str | None
    available: bool
    observed: dict[str, Any] | None = None
    error: str | None = None
    #: set when inspecting a taken-over claim: its recorded state
    resumed: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    action: SreAction
    #: True claimed now, False claimed before (by an earlier run), None no database
    durable: bool | None


@dataclass(frozen=True)
class Acted:
    action: SreAction
    snapshot: dict[str, Any]
    dry_run: bool
    detail: str = ""
    error: str | None = None


# ---------------------------------------------------------------------------- effects
@dataclass(frozen=True)
class Report:
    action: SreAction
    status: str
    detail: str
    snapshot: dict[str, Any] | None = None
    verified: bool | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Inspect:
    action: SreAction
    #: inspecting a taken-over claim in this recorded state (and its snapshot)
    resumed: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    action: SreAction


@dataclass(frozen=True)
class Act:
    action: SreAction
    dry_run: bool


@dataclass(frozen=True)
class Verify:
    action: SreAction
    snapshot: dict[str, Any]
    detail: str


Effect = Audit | Report | Inspect | Claim | Act | Verify
Event = Requested | Resumed | Inspected | Claimed | Acted


def _audit(a: SreAction, what: str, details: dict[str, Any]) -> Audit:
    return Audit(ME, what, a.action_id, details, idempotency_key=a.idempotency_key)


def _refuse(st: TargetState, a: SreAction, status: str, what: str, detail: str,
            remember: bool = True) -> tuple[TargetState, list[Effect]]:
    if remember:
        st.done[a.idempotency_key] = status
    return st, [_audit(a, what, {"reason": detail, "target": a.step.target.ref(),
                                 "plan_id": a.plan_id}),
                Report(a, status, detail)]


def step(state: TargetState, event: Event, now: float,
         rules: ExecRules) -> tuple[TargetState, list[Effect]]:
    """One step of the executor for one target; ``state`` is not modified."""
    st = TargetState(list(state.times), dict(state.done))
    a = event.action
    key, ref = a.idempotency_key, a.step.target.ref()
    if isinstance(event, Resumed):
        return _resume(st, event, rules)
    if isinstance(event, Requested):
        seen = st.done.get(key)
        # "claiming": the table claim was saved but the durable claim may never have
        # been made, and nothing was done (acting needs "claimed"): the durable claim,
        # made again below, decides
        if (seen is not None and seen != "claiming") or event.claimed_before is not None:
            return st, [_audit(a, "action.duplicate", {
                "target": ref, "previous": event.claimed_before or seen})]
        verdict = verify_action(a, event.raw, event.check, rules)
        if not verdict.ok:
            if verdict.kind == "blocked":
                return _refuse(st, a, "blocked", "action.blocked", verdict.reason)
            # not remembered: a forged key must not push real ones out of the window
            return _refuse(st, a, "blocked", "action.unverified", verdict.reason, remember=False)
        st.times = recent_actions(st.times, now)
        if len(st.times) >= rules.max_per_hour:
            return _refuse(st, a, "rate_limited", "action.rate_limited",
                           f"{len(st.times)} actions on {ref} within the hour "
                           f"(max {rules.max_per_hour})")
        return st, [Inspect(a)]
    if isinstance(event, Inspected) and event.resumed not in (None, "claimed"):
        return _inspected_mid_act(st, event)
    if isinstance(event, Inspected):
        status = event.incident_status
        if status == "resolved" or (status is None and rules.require_open_incident):
            return _refuse(st, a, "skipped", "action.skipped",
                           f"incident {a.incident_id} is {status or 'not known to be open'}")
        if not event.available:
            return _refuse(st, a, "failed", "action.failed", f"no back-end enabled for {ref}")
        if event.error is not None or event.observed is None:
            return _refuse(st, a, "failed", "action.failed", f"cannot observe {ref}: {event.error}")
        problem = identity_problem(a.step, event.observed)
        if problem:
            return _refuse(st, a, "skipped", "action.skipped", problem)
        failed = precheck_problems(a.step, event.observed)
        if failed:
            return _refuse(st, a, "skipped", "action.precheck_failed", "; ".join(failed))
        if event.resumed == "claimed":  # taken over with nothing done: the claim is ours
            st.done[key] = "claimed"
            return st, [Act(a, rules.dry_run or a.dry_run)]
        # claimed before acting: a crash from here on can never lead to a second execution
        st.done[key] = "claiming"
        return st, [Claim(a)]
    if isinstance(event, Claimed):
        if event.durable is False:
            return st, [_audit(a, "action.duplicate",
                               {"target": ref, "previous": "claimed in PostgreSQL"})]
        st.done[key] = "claimed"
        return st, [Act(a, rules.dry_run or a.dry_run)]
    # Acted
    if event.dry_run:
        st.done[key] = "dry_run"
        return st, [_audit(a, "action.dry_run", {"target": ref, "would": a.step.action,
                                                 "params": a.step.params}),
                    Report(a, "dry_run", f"dry run: would {a.step.action} {ref}",
                           event.snapshot, dry_run=True)]
    if event.error is not None:
        st.done[key] = "failed"
        return st, [_audit(a, "action.failed", {"target": ref, "error": event.error[:500]}),
                    Report(a, "failed", f"{a.step.action} {ref} failed: {event.error}",
                           event.snapshot)]
    st.times.append(now)
    st.done[key] = "executed"
    return st, [_audit(a, "action.executed", {"target": ref, "action": a.step.action,
                                              "detail": event.detail,
                                              "approved_by": a.approved_by, "policy": a.policy}),
                Verify(a, event.snapshot, event.detail)]


def _resume(st: TargetState, ev: Resumed, rules: ExecRules) -> tuple[TargetState, list[Effect]]:
    """A claim taken over from a stopped owner: verified again, then continued from
    its recorded state."""
    a = ev.action
    verdict = verify_action(a, ev.raw, ev.check, rules)
    if not verdict.ok:
        return _refuse(st, a, "blocked", "action.unverified",
                       f"taken-over claim: {verdict.reason}", remember=False)
    audit = _audit(a, "action.taken_over", {"target": a.step.target.ref(), "claim": ev.claim,
                                            "plan_id": a.plan_id})
    if ev.claim == "executed":
        st.done[a.idempotency_key] = "executed"
        return st, [audit, Verify(a, ev.snapshot, ev.detail or f"{a.step.action} done")]
    return st, [audit, Inspect(a, resumed=ev.claim, snapshot=ev.snapshot)]


def _inspected_mid_act(st: TargetState, ev: Inspected) -> tuple[TargetState, list[Effect]]:
    """A taken-over claim whose owner stopped during the call to the target."""
    a, ref = ev.action, ev.action.step.target.ref()
    # stopped during the call to the target: the live object tells whether it happened
    changed = identity_problem(a.step, ev.observed) if ev.observed is not None else None
    if changed:
        st.done[a.idempotency_key] = "executed"
        return st, [_audit(a, "action.executed", {"target": ref, "action": a.step.action,
                                                  "detail": f"taken over: {changed}",
                                                  "approved_by": a.approved_by,
                                                  "policy": a.policy}),
                    Verify(a, ev.snapshot, f"{a.step.action} {ref} done before a takeover "
                                           f"({changed})")]
    return _refuse(st, a, "failed", "action.outcome_unknown",
                   f"the executor stopped during {a.step.action} on {ref} and the object "
                   f"shows no change; not repeated: check {ref} by hand")
