"""Least privilege in the Helm chart, and a pod environment that cannot reconfigure the agent.

- RBAC: no wildcard, no access to Secrets, no exec/attach/port-forward, no
  token requests, no RBAC or impersonation verbs; nothing created but Jobs (and
  those only when ``run_job`` is among ``rbac.actions``); every write verb maps to
  an action of the executor, ConfigMaps only by name. (``test_helm.py`` checks the
  rules of the defaults exactly; this checks what must never be granted, for any
  values a user may pass.)
- The pod: non-root, read-only root filesystem, no privilege escalation, and
  ``enableServiceLinks: false`` -- Kubernetes otherwise injects ``<SERVICE>_PORT=
  tcp://...`` variables, and Faust reads bare names like ``WEB_PORT`` from the
  environment (at import, and over the app's own settings): a Service called
  ``web`` in the namespace would stop the agent from starting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_helm import by_kind, helm, render

pytestmark = pytest.mark.integration

__all__ = ["helm"]  # fixture

FORBIDDEN_RESOURCES = {"secrets", "pods/exec", "pods/attach", "pods/portforward", "pods/proxy",
                       "nodes/proxy", "services/proxy", "serviceaccounts/token", "roles",
                       "rolebindings", "clusterroles", "clusterrolebindings",
                       "certificatesigningrequests", "tokenreviews", "subjectaccessreviews"}
FORBIDDEN_VERBS = {"escalate", "bind", "impersonate", "*", "deletecollection"}
#: write verbs the executor's actions need, per resource
ALLOWED_WRITES = {
    "pods": {"delete"},  # restart_pod
    "deployments": {"patch"},  # rollout_restart / rollout_undo
    "statefulsets": {"patch"},  # rollout_restart
    "deployments/scale": {"patch"},  # scale
    "statefulsets/scale": {"patch"},  # scale
    "horizontalpodautoscalers": {"patch"},  # set_hpa_bounds
    "jobs": {"create"},  # run_job
    "configmaps": {"patch"},  # enable_rate_limit (resourceNames only)
}
READ = {"get", "list", "watch"}
ALL_ACTIONS = ("[restart_pod, rollout_restart, rollout_undo, scale, set_hpa_bounds, run_job, "
               "enable_rate_limit]")
VALUES = [None, "rbac: {extraRules: []}\nreplicaCount: 3\n",
          "actions: {dryRun: false}\n",
          f"actions: {{dryRun: false}}\nrbac: {{mode: cluster, actions: {ALL_ACTIONS}}}\n",
          f"actions: {{dryRun: false}}\nrbac: {{actions: {ALL_ACTIONS}}}\n"
          "kubernetes: {namespaces: [shop, fin]}\n"]


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
            for r in d.get("rules", [])]


@pytest.mark.parametrize("values", VALUES)
def test_rbac_never_grants_more_than_the_actions_need(helm: str, tmp_path: Path,
                                                      values: str | None) -> None:
    rules = _rules(render(helm, tmp_path, values))
    assert rules
    for rule in rules:
        groups, resources, verbs = (set(rule.get(k, [])) for k in ("apiGroups", "resources",
                                                                    "verbs"))
        assert "*" not in groups | resources | verbs, rule
        assert not resources & FORBIDDEN_RESOURCES, rule
        assert not verbs & FORBIDDEN_VERBS, rule
        assert not rule.get("nonResourceURLs"), rule
        if "configmaps" in resources:  # never every ConfigMap: only the named ones
            assert rule.get("resourceNames") and verbs <= {"get", "patch"}, rule
        for res in resources:
            extra = verbs - READ - ALLOWED_WRITES.get(res, set())
            assert not extra, (res, extra, rule)


def test_pod_runs_unprivileged(helm: str, tmp_path: Path) -> None:
    sts = by_kind(render(helm, tmp_path), "StatefulSet")[0]
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"].get("runAsNonRoot") is True
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem")
        assert not sc.get("privileged")
        assert "ALL" in sc.get("capabilities", {}).get("drop", [])


# Service-link variables (FOO_PORT=tcp://...) must not reach the pod: the chart sets
# enableServiceLinks: false (and streams/app.py gives faust.App env={} -- see the next test)
def test_pod_gets_no_service_link_variables(helm: str, tmp_path: Path) -> None:
    sts = by_kind(render(helm, tmp_path), "StatefulSet")[0]
    assert sts["spec"]["template"]["spec"].get("enableServiceLinks") is False


# faust.App would read bare env names (WEB_PORT, BROKER_URL,
# PROCESSING_GUARANTEE ...) over the settings passed in: streams/app.py gives it env={}
def test_service_link_variables_cannot_reconfigure_or_break_the_worker() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_AGENT_")}
    env.update({"WEB_PORT": "tcp://10.96.0.5:80", "WEB_SERVICE_HOST": "10.96.0.5",
                "BROKER_URL": "kafka://attacker.example:9092", "SRE_AGENT_WORKER__WEB_PORT": "7123"})
    code = ("from sre_agent.config import load_settings\n"
            "from sre_agent.streams import create_app\n"
            "import os\n"
            "app, _ = create_app(load_settings(env=dict(os.environ)))\n"
            "print(app.conf.web_port, app.conf.broker[0])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["7123", "kafka://127.0.0.1:9092"], out.stdout
