"""Approval state machine of one plan: quorum and roles per tier, one vote each, expiry.

::

    pending --(quorum of approvals)--> approved --(steps run one by one)--> completed
       |  \\--(one reject)--> rejected                                 \\--> failed
       |--(expires_at passed)--> expired
       \\--(a later diagnosis of the incident replaced it)--> superseded
    blocked (diagnosis only: no vote is accepted)     auto (approved by policy)

One plan of an incident runs at a time. An executable plan (auto or approved) whose
incident has another plan running (a step in flight, or steps still to run) waits for
it (``waiting_for``, audited ``plan.queued``) and starts when the agent feeds
:class:`Release` after that plan stopped (``plan.released``). A running plan that a
later diagnosis supersedes runs no further step: the step in flight, which cannot be
called back, finishes and the plan stops (``plan.stopped``). Which other plan of the
incident runs is the agent's ``busy`` argument to :func:`decide`.

Quorum: ``ONE_APPROVAL`` needs one approval from any approval role (oncall, sre,
lead, admin); ``TWO_SRE_ONE_LEAD`` needs three different people of whom at least
one is a lead (or admin). Any single reject from an allowed voter rejects the plan.
A person votes once: a second vote (even a changed mind) is refused, not counted.

The state is a pydantic model serialised to the approval table; every function is
pure and takes ``now``. :func:`decide` is the approval manager as a state machine,
``(state, event, now, rules) -> (state, effects)``: the agent only decodes events,
checks their signatures, feeds them in and carries out the effects (audit, hand a
step to the executor, post to Slack, notify). Nothing an event says about itself
is believed: a plan's policy is recomputed (:func:`effective_policy`), a voter's
role comes from configuration (:class:`VoterRoles`), never from the vote, and
unsigned plans, votes and results are refused.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from sre_agent.schemas import ActionPlan, Approval
>>> t0 = datetime(2025, 11, 13, 12, tzinfo=UTC)
>>> plan = ActionPlan(plan_id="p1", incident_id="i1", risk_score=0.7, risk_tier="HIGH",
...                   policy="TWO_SRE_ONE_LEAD", expires_at=t0 + timedelta(hours=1))
>>> st = PlanState.open(plan)
>>> for user, role in [("ann", "sre"), ("ann", "sre"), ("bob", "oncall"), ("cy", "lead")]:
...     out = cast_vote(st, Approval(plan_id="p1", decision="approve", user=user, role=role), t0)
...     print(user, out.accepted, out.reason)
ann True 1/3 approvals, lead missing
ann False ann already voted
bob True 2/3 approvals, lead missing
cy True approved
>>> st.status, st.approvers()
('approved', ['ann', 'bob', 'cy'])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ..schemas import ActionPlan, ActionResult, Approval, SreAction, UtcDatetime
from .policy import SPAN_FLOOR, STRICTNESS, PolicyDecision, PolicyEngine
from .signing import Check, Keyring

__all__ = ["LEAD_ROLES", "VOTING_ROLES", "Audit", "Emit", "Hold", "Notify", "PlanIn", "PlanState",
           "Post", "Release", "ResultIn", "Rules", "UpdateSlack", "Vote", "VoteIn", "VoteOutcome",
           "VoterRoles", "action_for", "cast_vote", "decide", "effective_policy",
           "expire_if_due", "quorum_status", "record_result", "running_sibling",
           "verify_quorum"]

Status = Literal["pending", "approved", "rejected", "expired", "blocked", "auto",
                 "completed", "failed", "superseded"]
VOTING_ROLES = frozenset({"oncall", "sre", "lead", "admin"})
LEAD_ROLES = frozenset({"lead", "admin"})
#: step results after which the next step may run
PROCEED = frozenset({"succeeded", "dry_run"})


class Vote(BaseModel):
    user: str
    role: str
    decision: Literal["approve", "reject"]
    source: str = "api"
    time: UtcDatetime
    comment: str = ""


class PlanState(BaseModel):
    plan: ActionPlan
    status: Status = "pending"
    votes: list[Vote] = Field(default_factory=list)
    decided_at: UtcDatetime | None = None
    #: index of the next step to hand to the executor
    next_step: int = 0
    step_status: dict[int, str] = Field(default_factory=dict)
    #: where the approval request was posted (channel, ts) for later updates; while a
    #: post is in flight only ``{"posting": <unix time>}`` (outcome unknown after a crash)
    slack: dict[str, str] = Field(default_factory=dict)
    #: step indexes already handed to the executor on sre-actions
    requested: list[int] = Field(default_factory=list)
    #: the signed plan event as received, and the signed votes that counted (raw JSON
    #: objects): attached to each sre-action so the executor verifies the quorum itself
    signed_plan: dict[str, Any] = Field(default_factory=dict)
    ballots: list[dict[str, Any]] = Field(default_factory=list)
    #: another plan of the incident that runs: this one, executable, starts after it
    waiting_for: str | None = None

    @classmethod
    def open(cls, plan: ActionPlan) -> PlanState:
        status: Status = plan.status if plan.status in ("blocked", "auto") else "pending"
        return cls(plan=plan, status=status)

    def approvers(self) -> list[str]:
        return [v.user for v in self.votes if v.decision == "approve"]

    @property
    def executable(self) -> bool:
        return self.status in ("approved", "auto")

    @property
    def in_flight(self) -> bool:
        """A step was handed to the executor and its result has not come back."""
        return any(i not in self.step_status for i in self.requested)

    @property
    def running(self) -> bool:
        """Executing: a step in flight, or (started, not waiting) steps still to run."""
        return self.in_flight or (self.executable and self.waiting_for is None
                                  and self.next_step < len(self.plan.steps)
                                  and bool(self.requested))


@dataclass(frozen=True)
class VoteOutcome:
    accepted: bool
    reason: str
    #: the vote settled the plan (approved or rejected)
    decided: bool = False


def quorum_status(policy: str, votes: list[Vote]) -> tuple[bool, str]:
    """Is the quorum of ``policy`` met by the approving ``votes``? And what is missing."""
    approving = {v.user.lower(): v.role for v in votes if v.decision == "approve"}
    if policy == "ONE_APPROVAL":
        return (len(approving) >= 1, f"{len(approving)}/1 approvals")
    if policy == "TWO_SRE_ONE_LEAD":
        leads = sum(1 for r in approving.values() if r in LEAD_ROLES)
        ok = len(approving) >= 3 and leads >= 1
        missing = "" if leads else ", lead missing"
        return ok, f"{len(approving)}/3 approvals{missing}"
    return False, f"policy {policy} takes no votes"


def running_sibling(states: Iterable[PlanState | None], incident_id: str,
                    plan_id: str) -> str | None:
    """Id of another plan of ``incident_id`` that is running, if any (the ``busy``
    argument of :func:`decide`: one plan of an incident runs at a time)."""
    for st in states:
        if (st is not None and st.plan.incident_id == incident_id
                and st.plan.plan_id != plan_id and st.running):
            return st.plan.plan_id
    return None


def expire_if_due(state: PlanState, now: datetime) -> bool:
    """Move a pending plan past its ``expires_at`` to ``expired``; True if it did."""
    exp = state.plan.expires_at
    if state.status == "pending" and exp is not None and now >= exp:
        state.status = "expired"
        state.decided_at = now
        return True
    return False


def cast_vote(state: PlanState, approval: Approval, now: datetime) -> VoteOutcome:
    """Apply one vote to ``state`` (in place) and say whether it counted."""
    user = approval.user.strip()
    if expire_if_due(state, now):
        return VoteOutcome(False, "plan expired", decided=True)
    if state.status == "blocked":
        return VoteOutcome(False, "plan is BLOCKED: diagnosis only, no vote can execute it")
    if state.status != "pending":
        return VoteOutcome(False, f"plan is already {state.status}")
    if approval.role not in VOTING_ROLES:
        return VoteOutcome(False, f"role {approval.role!r} may not vote")
    if any(v.user.lower() == user.lower() for v in state.votes):
        return VoteOutcome(False, f"{user} already voted")
    state.votes.append(Vote(user=user, role=approval.role, decision=approval.decision,
                            source=approval.source, time=now, comment=approval.comment))
    if approval.decision == "reject":
        state.status = "rejected"
        state.decided_at = now
        return VoteOutcome(True, f"rejected by {user}", decided=True)
    ok, progress = quorum_status(state.plan.policy, state.votes)
    if ok:
        state.status = "approved"
        state.decided_at = now
        return VoteOutcome(True, "approved", decided=True)
    return VoteOutcome(True, progress)


def record_result(state: PlanState, step_index: int, status: str) -> int | None:
    """Record an executor result; return the index of the next step to run, if any.

    Results for steps other than the one in flight (redeliveries) are ignored.
    A step that did not succeed ends the plan as ``failed``. The step in flight of a
    plan superseded while running is recorded; nothing follows it.
    """
    if (state.status == "superseded" and step_index in state.requested
            and step_index not in state.step_status):
        state.step_status[step_index] = status
        return None
    if not state.executable or step_index != state.next_step or step_index in state.step_status:
        return None
    state.step_status[step_index] = status
    if status not in PROCEED:
        state.status = "failed"
        return None
    state.next_step = step_index + 1
    if state.next_step >= len(state.plan.steps):
        state.status = "completed"
        return None
    return state.next_step


# ---------------------------------------------------------------------------- trust
@dataclass(frozen=True)
class VoterRoles:
    """Who may vote, from configuration only (never from the vote).

    Slack votes are identified by the Slack user id (``slack.user_roles``); API and
    CLI votes by the user name, through ``actions.approvers``; an API user not listed
    there votes as ``oncall`` with an approver token, ``admin`` with an admin token.

    >>> roles = VoterRoles(slack={"U1": "lead"}, named={"ann": "sre"}, tokens={"bob": "approver"})
    >>> roles.role_of("slack", "U1"), roles.role_of("slack", "ann"), roles.role_of("api", "ann")
    ('lead', None, 'sre')
    >>> roles.role_of("api", "bob"), roles.role_of("cli", "bob"), roles.role_of("api", "eve")
    ('oncall', None, None)
    """

    slack: Mapping[str, str] = field(default_factory=dict)
    named: Mapping[str, str] = field(default_factory=dict)
    tokens: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> VoterRoles:
        tokens: dict[str, str] = {}
        order = ("viewer", "operator", "approver", "admin")
        for i, spec in enumerate(sorted(settings.api.tokens.values())):
            role, _, user = spec.partition(":")
            user = user or f"{role}-{i}"
            if role in order and order.index(role) > order.index(tokens.get(user, "viewer")):
                tokens[user] = role
        return cls(slack=dict(settings.slack.user_roles), named=dict(settings.actions.approvers),
                   tokens=tokens)

    def role_of(self, source: str, user: str) -> str | None:
        if source == "slack":
            role = self.slack.get(user)
        else:
            role = self.named.get(user)
            if role is None and source == "api":
                role = {"admin": "admin", "approver": "oncall"}.get(self.tokens.get(user, ""))
        return role if role in VOTING_ROLES else None


def effective_policy(plan: ActionPlan, engine: PolicyEngine) -> PolicyDecision:
    """The plan's policy recomputed from its score and steps, never looser than claimed.

    The score is floored at what the plan's own steps imply (the risk score never
    falls more than ``SPAN_FLOOR`` below the riskiest step), protected targets are
    re-checked, and of the recomputed and the claimed policy the stricter one wins.
    ``status`` on the plan is ignored.
    """
    floor = max((s.risk for s in plan.steps), default=0.0) - SPAN_FLOOR
    mine = engine.decide(max(plan.risk_score, floor), plan.steps, plan.service)
    if STRICTNESS[plan.policy] > STRICTNESS[mine.policy]:
        return PolicyDecision(mine.tier, plan.policy, mine.protected,
                              f"{mine.reason}; kept the stricter {plan.policy} of the plan")
    return mine


def verify_quorum(plan: ActionPlan, policy: str, ballots: Sequence[Any], keyring: Keyring,
                  roles: VoterRoles) -> tuple[bool, str, list[str]]:
    """Replay signed votes (raw JSON objects) on ``plan`` under ``policy``.

    Returns (approved, why, approvers). Each vote must be signed by a trusted key,
    be for this plan, and come from someone configuration gives a voting role.
    """
    if policy == "AUTO":
        return True, "AUTO policy", []
    if policy == "BLOCKED":
        return False, "policy BLOCKED: diagnosis only", []
    state = PlanState.open(plan.model_copy(update={"policy": policy, "status": "pending",
                                                   "expires_at": None}))
    problems = []
    for raw in ballots[:50]:
        check = keyring.verify(raw)
        if not check.ok:
            problems.append(f"vote signature: {check.reason}")
            continue
        try:
            vote = Approval.model_validate(raw)
        except ValidationError:
            problems.append("vote does not validate")
            continue
        role = roles.role_of(vote.source, vote.user)
        if vote.plan_id != plan.plan_id or role is None or (
                vote.incident_id is not None and vote.incident_id != plan.incident_id):
            problems.append(f"vote by {vote.user[:64]} does not count")
            continue
        cast_vote(state, vote.model_copy(update={"role": role}), vote.time)
    if state.status == "approved":
        return True, "quorum met", state.approvers()
    _, progress = quorum_status(policy, state.votes)
    why = f"quorum not met ({progress})"
    return False, why + (f"; {'; '.join(problems[:3])}" if problems else ""), state.approvers()


# ---------------------------------------------------------------------------- machine
@dataclass(frozen=True)
class Rules:
    """Configuration the approval machine decides with (pure data)."""

    policy: PolicyEngine
    roles: VoterRoles
    dry_run: bool = True
    #: a Slack approvals client is configured (requests are posted there)
    slack: bool = False


@dataclass(frozen=True)
class PlanIn:
    plan: ActionPlan
    check: Check
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VoteIn:
    vote: Approval
    check: Check
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultIn:
    result: ActionResult
    check: Check


@dataclass(frozen=True)
class Release:
    """The plan ``plan_id`` waited for (same incident) stopped running: start if free."""

    plan_id: str


@dataclass(frozen=True)
class Audit:
    actor: str
    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Emit:
    """Hand step ``action.step_index`` to the executor (the agent signs and sends it)."""

    action: SreAction


@dataclass(frozen=True)
class Post:
    """Post the approval request to Slack (once, also across a crash)."""


@dataclass(frozen=True)
class UpdateSlack:
    note: str


@dataclass(frozen=True)
class Notify:
    title: str
    text: str
    resolve: bool = False


@dataclass(frozen=True)
class Hold:
    """Keep a signed vote whose plan has not reached this stage yet (``action-plans`` and
    ``approvals`` are separate topics: the API may accept a vote for a plan the read
    model shows before this stage has read it); it is fed again when the plan comes."""

    vote: VoteIn


Effect = Audit | Emit | Post | UpdateSlack | Notify | Hold
Event = PlanIn | VoteIn | ResultIn | Release

ME = "approval-manager"


def action_for(state: PlanState, index: int, dry_run: bool) -> SreAction:
    """Step ``index`` of the plan as an ``sre-actions`` event, with its evidence attached."""
    plan = state.plan
    step = plan.steps[index]
    key = hashlib.sha256(f"{plan.plan_id}:{index}:{step.target.ref()}".encode()).hexdigest()
    approved_by = state.approvers() or [f"policy:{plan.policy}"]
    return SreAction(action_id=f"{plan.plan_id}-s{index}", idempotency_key=key,
                     plan_id=plan.plan_id, incident_id=plan.incident_id, step_index=index,
                     step=step, approved_by=approved_by, policy=plan.policy, dry_run=dry_run,
                     plan=dict(state.signed_plan) or None,
                     approvals=[dict(b) for b in state.ballots])


def _emit(state: PlanState, rules: Rules) -> list[Effect]:
    a = action_for(state, state.next_step, rules.dry_run)
    return [Emit(a), Audit(ME, "action.requested", a.action_id, {
        "plan_id": state.plan.plan_id, "step_index": a.step_index, "action": a.step.action,
        "target": a.step.target.ref(), "approved_by": a.approved_by, "policy": a.policy,
        "dry_run": a.dry_run}, idempotency_key=a.idempotency_key)]


def _resume(state: PlanState, rules: Rules) -> list[Effect]:
    """What a crashed owner left half done: a step never handed over, a post never made.

    The step goes first: the post saves the state, and a step is marked requested
    only once it was sent.
    """
    out: list[Effect] = []
    if (state.executable and state.next_step < len(state.plan.steps)
            and state.waiting_for is None and state.next_step not in state.requested
            and state.next_step not in state.step_status):
        out += _emit(state, rules)
    if rules.slack and "ts" not in state.slack and state.status in ("pending", "blocked"):
        out.append(Post())
    return out


def _notify(state: PlanState, title: str, text: str) -> Notify:
    return Notify(title, text)


def decide(state: PlanState | None, event: Event, now: datetime,
           rules: Rules, busy: str | None = None) -> tuple[PlanState | None, list[Effect]]:
    """One step of the approval manager: the new state of the plan and what to do.

    ``busy``: another plan of the same incident that is running (the agent looks it
    up); an executable plan waits for it instead of starting. ``state`` is not
    modified; the returned state is a new object.
    """
    st = state.model_copy(deep=True) if state is not None else None
    if isinstance(event, PlanIn):
        return _on_plan(st, event, now, rules, busy)
    if isinstance(event, VoteIn):
        return _on_vote(st, event, now, rules, busy)
    if isinstance(event, Release):
        return _on_release(st, rules, busy)
    return _on_result(st, event, rules)


def _start(st: PlanState, rules: Rules, busy: str | None) -> list[Effect]:
    """Hand over the first step of a plan just made executable, or queue it behind
    ``busy`` (another running plan of its incident)."""
    if busy is not None:
        st.waiting_for = busy
        return [Audit(ME, "plan.queued", st.plan.plan_id, {
            "incident_id": st.plan.incident_id, "waiting_for": busy,
            "reason": "another plan of the incident is running; one plan runs at a time"})]
    return _emit(st, rules)


def _on_release(st: PlanState | None, rules: Rules,
                busy: str | None) -> tuple[PlanState | None, list[Effect]]:
    if st is None or st.waiting_for is None:
        return st, []
    if not st.executable:  # superseded, or decided otherwise, while it waited
        st.waiting_for = None
        return st, []
    if busy is not None:  # yet another plan of the incident runs now
        st.waiting_for = busy
        return st, []
    after, st.waiting_for = st.waiting_for, None
    return st, [Audit(ME, "plan.released", st.plan.plan_id,
                      {"incident_id": st.plan.incident_id, "after": after}),
                *_emit(st, rules)]


def _on_plan(st: PlanState | None, ev: PlanIn, now: datetime,
             rules: Rules, busy: str | None = None) -> tuple[PlanState | None, list[Effect]]:
    plan = ev.plan
    if not ev.check.ok:
        return st, [Audit(ME, "plan.refused", plan.plan_id,
                          {"reason": f"signature: {ev.check.reason}", "claimed_policy": plan.policy,
                           "claimed_status": plan.status})]
    if plan.status == "superseded":
        return _supersede(st, plan, now)
    if st is not None:
        out: list[Effect] = []
        if plan.status == "expired" and expire_if_due(st, now):
            out += [Audit(ME, "plan.expired", plan.plan_id, {"votes": len(st.votes)}),
                    UpdateSlack("Expired before reaching its quorum.")]
        if st.waiting_for is not None:  # woken (the plan it waited for stopped): start?
            return _on_release(st, rules, busy)
        return st, out + _resume(st, rules)  # a redelivered or repeated plan
    if plan.status == "expired":
        return None, []
    decision = effective_policy(plan, rules.policy)
    out = []
    if decision.policy != plan.policy or decision.status != plan.status:
        out.append(Audit(ME, "policy.corrected", plan.plan_id, {
            "claimed": {"policy": plan.policy, "status": plan.status},
            "policy": decision.policy, "tier": decision.tier, "reason": decision.reason}))
    fixed = plan.model_copy(update={"policy": decision.policy, "status": decision.status,
                                    "policy_reason": decision.reason,
                                    "protected": decision.protected or plan.protected})
    st = PlanState.open(fixed)
    st.signed_plan = dict(ev.raw)
    if st.status == "auto":
        st.decided_at = now
        out.append(Audit(ME, "plan.auto", plan.plan_id,
                         {"tier": decision.tier, "reason": decision.reason}))
        return st, out + _start(st, rules, busy)
    if rules.slack:
        out.append(Post())
    if st.status == "blocked":
        out += [Audit(ME, "plan.blocked", plan.plan_id,
                      {"reason": decision.reason, "protected": fixed.protected}),
                _notify(st, f"Plan BLOCKED (diagnosis only): {plan.cause_type} on {plan.service}",
                        decision.reason)]
    else:
        out += [Audit(ME, "approval.requested", plan.plan_id, {
                    "policy": decision.policy, "tier": decision.tier,
                    "expires_at": plan.expires_at.isoformat() if plan.expires_at else None}),
                _notify(st, f"Approval needed ({decision.tier}, {decision.policy})",
                        f"{plan.cause_type} on {plan.service}: plan {plan.plan_id}")]
    return st, out


def _supersede(st: PlanState | None, plan: ActionPlan,
               now: datetime) -> tuple[PlanState | None, list[Effect]]:
    """A later diagnosis of the incident replaced ``plan``: a plan still waiting (pending,
    or BLOCKED on show) takes no more votes; an executable one (auto or approved) runs no
    further step: the step in flight finishes (it cannot be called back) and the plan
    stops. One that finished is left as it is (what ran is audited)."""
    why = plan.superseded_reason or "the diagnosis changed"
    by = plan.superseded_by
    details = {"reason": why, "superseded_by": by, "incident_id": plan.incident_id}
    if st is None:  # the plan itself never arrived (or was lost): it must not open later
        st = PlanState(plan=plan, status="superseded", decided_at=now)
        return st, [Audit(ME, "plan.superseded", plan.plan_id, {**details, "was": None})]
    if st.status in ("approved", "auto") and st.next_step < len(st.plan.steps):
        was, st.status, st.waiting_for = st.status, "superseded", None
        st.plan = st.plan.model_copy(update={"superseded_by": by, "superseded_reason": why})
        note = (f"Superseded while {'running' if st.requested else 'queued'}: {why}. "
                f"No further step runs" + (f"; plan {by} replaces it." if by else "."))
        return st, [Audit(ME, "plan.superseded", plan.plan_id, {
                        **details, "was": was, "steps_done": len(st.step_status),
                        "step_in_flight": st.in_flight}),
                    *([] if st.in_flight else [Audit(ME, "plan.stopped", plan.plan_id, {
                        "incident_id": plan.incident_id, "steps": {
                            str(k): v for k, v in st.step_status.items()}})]),
                    UpdateSlack(note),
                    _notify(st, f"Plan superseded: {st.plan.cause_type} on {st.plan.service}",
                            note)]
    if st.status not in ("pending", "blocked"):
        return st, []
    was, st.status, st.decided_at = st.status, "superseded", now
    st.plan = st.plan.model_copy(update={"superseded_by": by, "superseded_reason": why})
    note = f"Superseded: {why}." + (f" Plan {by} replaces it." if by else "")
    return st, [Audit(ME, "plan.superseded", plan.plan_id, {**details, "was": was}),
                UpdateSlack(note),
                _notify(st, f"Plan superseded: {st.plan.cause_type} on {st.plan.service}", note)]


def _on_vote(st: PlanState | None, ev: VoteIn, now: datetime,
             rules: Rules, busy: str | None = None) -> tuple[PlanState | None, list[Effect]]:
    vote = ev.vote
    who = {"user": vote.user, "claimed_role": vote.role, "decision": vote.decision,
           "source": vote.source, "comment": vote.comment}
    if st is None:
        if ev.check.ok:  # not seen yet: held until the plan comes (or expires unseen)
            return None, [Audit(vote.user, "vote.held", vote.plan_id,
                                {**who, "reason": "plan not seen yet"}), Hold(ev)]
        return None, [Audit(vote.user, "vote.refused", vote.plan_id,
                            {**who, "reason": f"unknown plan; signature: {ev.check.reason}"})]
    out = _resume(st, rules)
    if not ev.check.ok:
        return st, out + [Audit(vote.user, "vote.refused", vote.plan_id,
                                {**who, "reason": f"signature: {ev.check.reason}"})]
    if vote.incident_id is not None and vote.incident_id != st.plan.incident_id:
        # the incident routes the vote; it is never believed: a vote naming another
        # incident than its plan's was not made for this plan
        return st, out + [Audit(vote.user, "vote.refused", vote.plan_id, {
            **who, "reason": f"the vote names incident {vote.incident_id[:128]}, the plan "
                             f"belongs to {st.plan.incident_id}"})]
    role = rules.roles.role_of(vote.source, vote.user)
    if role is None:
        return st, out + [Audit(vote.user, "vote.refused", vote.plan_id,
                                {**who, "reason": "not a configured approver"})]
    result = cast_vote(st, vote.model_copy(update={"role": role}), now)
    if result.accepted:
        st.ballots.append(dict(ev.raw))
    out.append(Audit(vote.user, "vote.cast" if result.accepted else "vote.refused", vote.plan_id,
                     {**who, "role": role, "reason": result.reason, "status": st.status}))
    if not result.decided:
        if result.accepted:
            out.append(UpdateSlack(f"{vote.user} ({role}) approved: {result.reason}"))
        return st, out
    out += [Audit(ME, f"plan.{st.status}", vote.plan_id,
                  {"approvers": st.approvers(), "by": vote.user}),
            UpdateSlack(f"{st.status} — last vote by {vote.user} ({role})")]
    if st.status == "approved":
        out += _start(st, rules, busy)
    return st, out


def _on_result(st: PlanState | None, ev: ResultIn,
               rules: Rules) -> tuple[PlanState | None, list[Effect]]:
    res = ev.result
    if st is None:
        return None, []
    if not ev.check.ok:
        return st, [Audit(ME, "result.refused", res.plan_id,
                          {"reason": f"signature: {ev.check.reason}", "status": res.status,
                           "step_index": res.step_index})]
    recorded = len(st.step_status)
    nxt = record_result(st, res.step_index, res.status)
    if len(st.step_status) == recorded:  # a redelivered or stray result
        return st, _resume(st, rules)
    if nxt is not None:
        return st, _emit(st, rules)
    out: list[Effect] = []
    if st.status == "superseded":  # its step in flight came back: it runs no more
        return st, [Audit(ME, "plan.stopped", res.plan_id, {
            "incident_id": st.plan.incident_id, "reason": st.plan.superseded_reason,
            "steps": {str(k): v for k, v in st.step_status.items()}})]
    if st.status in ("completed", "failed"):
        out += [Audit(ME, f"plan.{st.status}", res.plan_id,
                      {"steps": {str(k): v for k, v in st.step_status.items()}}),
                UpdateSlack(f"Step {res.step_index + 1}: {res.status} — {res.detail}")]
        if st.plan.policy == "AUTO" or st.status == "failed":
            out.append(_notify(st, f"Plan {st.status}: {st.plan.cause_type} on "
                                   f"{st.plan.service}", res.detail))
    return st, out
