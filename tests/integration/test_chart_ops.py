"""The chart as a security review and a platform team see it (issue 17, items 2-4).

- ``helm lint --strict`` and ``helm template`` of the default values and of the
  production values file (helm/sre-agent/ci/production-values.yaml); every rendered
  manifest validated offline against the Kubernetes JSON schemas that the pinned
  PyPI package ``kubernetes-validate`` bundles (strict: unknown fields are errors);
  the two prometheus-operator objects (no schema there) checked against their source files.
- RBAC: a namespaced mode (Roles in the watched namespaces, the agent told to watch
  only those), write rules only when actions are enabled, no ``deployments/rollback``,
  names unique across namespaces.
- NetworkPolicy; ``/status``, ``/metrics`` and the probes never on the Ingress; the
  ServiceMonitor selects one Service; ``values.schema.json`` rejects mistyped values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.integration.test_helm import CHART, by_kind, helm, one, render, run

pytestmark = pytest.mark.integration

__all__ = ["helm"]  # fixture

PRODUCTION = CHART / "ci" / "production-values.yaml"
#: the oldest Kubernetes the chart supports with current APIs, and the newest bundled
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
INTERNAL_PATHS = ("/status", "/metrics", "/livez", "/readyz")
READ = {"get", "list", "watch"}
CRDS = {"ServiceMonitor", "PrometheusRule"}


def production(helm: str, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    return render(helm, tmp_path, PRODUCTION.read_text(), *extra)


def rules_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in by_kind(docs, "Role") + by_kind(docs, "ClusterRole") for r in d["rules"]]


def writes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rules_of(docs) if set(r["verbs"]) - READ]


def test_lint_default_and_production(helm: str) -> None:
    for extra in ([], ["-f", str(PRODUCTION)]):
        proc = run(helm, "lint", "--strict", str(CHART), *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("values", ["default", "production"])
def test_rendered_manifests_are_valid_kubernetes_objects(helm: str, tmp_path: Path,
                                                         values: str) -> None:
    docs = render(helm, tmp_path) if values == "default" else production(helm, tmp_path)
    checked = 0
    for doc in docs:
        if doc["kind"] in CRDS:
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} invalid for "
                                     f"Kubernetes {version}: {exc.message}") from None
        checked += 1
    assert checked >= 10, checked
    if values == "production":
        assert {d["kind"] for d in docs} >= CRDS | {"Ingress", "NetworkPolicy", "Role"}


def test_prometheus_operator_objects_carry_the_shipped_files(helm: str, tmp_path: Path) -> None:
    docs = production(helm, tmp_path)
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    dash = one(docs, "ConfigMap", "rel-sre-agent-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["sre-agent.json"]) == \
        json.loads((CHART / "files" / "dashboard.json").read_text())
    assert not by_kind(render(helm, tmp_path), "PrometheusRule")  # opt-in


def test_namespaced_rbac_grants_only_the_watched_namespaces(helm: str, tmp_path: Path) -> None:
    docs = production(helm, tmp_path)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles, bindings = by_kind(docs, "Role"), by_kind(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["payments", "shop"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["payments", "shop"]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "sre"}]
        assert b["roleRef"]["kind"] == "Role"
    # the agent watches exactly those (a namespaced Role grants no cluster-wide list)
    cfg = yaml.safe_load(one(docs, "ConfigMap", "rel-sre-agent")["data"]["config.yaml"])
    assert cfg["kubernetes"]["namespaces"] == ["shop", "payments"]
    # actions on: the writes of rbac.actions (set_hpa_bounds included), nothing else
    got = {(tuple(r["resources"]), tuple(r["verbs"])) for r in writes(docs)}
    assert got == {(("pods",), ("delete",)), (("deployments", "statefulsets"), ("patch",)),
                   (("deployments/scale", "statefulsets/scale"), ("patch",)),
                   (("horizontalpodautoscalers",), ("patch",))}


def test_write_rules_only_when_actions_are_enabled(helm: str, tmp_path: Path) -> None:
    assert writes(render(helm, tmp_path)) == []  # dry-run by default
    assert writes(production(helm, tmp_path, "--set", "actions.dryRun=true")) == []
    assert writes(render(helm, tmp_path, "actions: {dryRun: false}\n"))
    only = render(helm, tmp_path, "actions: {dryRun: false}\nrbac: {actions: [restart_pod]}\n")
    assert [(r["resources"], r["verbs"]) for r in writes(only)] == [(["pods"], ["delete"])]
    # no Kubernetes at all: no RBAC, no API token in the pod
    off = render(helm, tmp_path, "kubernetes: {enabled: false}\n")
    assert not rules_of(off)
    pod = one(off, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_no_rule_names_a_resource_that_does_not_exist(helm: str, tmp_path: Path) -> None:
    everything = ("actions: {dryRun: false}\nrbac: {mode: cluster, actions: [restart_pod, "
                  "rollout_restart, rollout_undo, scale, set_hpa_bounds, run_job, "
                  "enable_rate_limit]}\n")
    for docs in (render(helm, tmp_path), production(helm, tmp_path),
                 render(helm, tmp_path, everything)):
        resources = {res for r in rules_of(docs) for res in r["resources"]}
        assert "deployments/rollback" not in resources
        assert resources <= {"pods", "events", "deployments", "replicasets", "statefulsets",
                             "deployments/scale", "statefulsets/scale",
                             "horizontalpodautoscalers", "cronjobs", "jobs", "configmaps"}


def test_rbac_names_do_not_collide_across_namespaces(helm: str, tmp_path: Path) -> None:
    def names(ns: str, values: str) -> dict[tuple[str, str, str | None], dict[str, Any]]:
        proc = run(helm, "template", "rel", str(CHART), "--namespace", ns,
                   *(["--set-json", values] if values else []))
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d for d in docs
                if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")}

    # cluster mode: ClusterRoles are cluster-scoped, so the release namespace is in the name
    a, b = names("team-a", 'rbac={"mode":"cluster"}'), names("team-b", 'rbac={"mode":"cluster"}')
    assert a and b and not set(a) & set(b), (set(a), set(b))
    binding = next(d for d in a.values() if d["kind"] == "ClusterRoleBinding")
    role = next(d for d in a.values() if d["kind"] == "ClusterRole")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # namespaced mode: two releases watching the same namespace get two Roles there
    shared = 'kubernetes={"namespaces":["shop"]}'
    a, b = names("team-a", shared), names("team-b", shared)
    assert {ns for _, _, ns in a} == {"shop"} and not set(a) & set(b), (set(a), set(b))


def test_network_policy_admits_only_the_listed_peers(helm: str, tmp_path: Path) -> None:
    default = one(render(helm, tmp_path), "NetworkPolicy")
    sts = one(render(helm, tmp_path), "StatefulSet")
    selector = default["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert default["spec"]["policyTypes"] == ["Ingress"] and default["spec"]["ingress"] == []
    prod = one(production(helm, tmp_path), "NetworkPolicy")
    [rule] = prod["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
             for p in rule["from"]]
    assert peers == ["ingress-nginx", "monitoring"]
    locked = one(production(helm, tmp_path, "--set", "networkPolicy.egress.restrict=true"),
                 "NetworkPolicy")
    assert locked["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for p in locked["spec"]["egress"][0]["ports"]} == {53}


def _routes(path: str, path_type: str, target: str) -> bool:
    """Whether an Ingress path routes ``target`` (Prefix matches whole path elements)."""
    if path_type == "Exact":
        return path == target
    p = path.rstrip("/")
    return p == "" or target == p or target.startswith(p + "/")


def test_ingress_never_publishes_status_metrics_or_probes(helm: str, tmp_path: Path) -> None:
    ing = one(production(helm, tmp_path), "Ingress")
    paths = [(p["path"], p["pathType"]) for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    assert ("/api", "Prefix") in paths and ("/webhooks", "Prefix") in paths
    for target in INTERNAL_PATHS:
        assert not any(_routes(p, t, target) for p, t in paths), (target, paths)
    for path, path_type in (("/", "Prefix"), ("/metrics", "Exact"), ("/status", "Prefix"),
                            ("/readyz/", "ImplementationSpecific")):
        values = ("ingress: {enabled: true, hosts: [{host: h.example.com, paths: "
                  f"[{{path: '{path}', pathType: {path_type}}}]}}]}}\n")
        f = tmp_path / "bad.yaml"
        f.write_text(values)
        proc = run(helm, "template", "rel", str(CHART), "-f", str(f))
        assert proc.returncode != 0 and "would publish" in proc.stderr, (path, proc.stderr)


def test_service_monitor_scrapes_each_pod_once(helm: str, tmp_path: Path) -> None:
    docs = production(helm, tmp_path)
    sm = one(docs, "ServiceMonitor")
    want = sm["spec"]["selector"]["matchLabels"].items()
    matched = [s for s in by_kind(docs, "Service") if want <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in matched] == ["rel-sre-agent-headless"]
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in matched[0]["spec"]["ports"]}
    assert matched[0]["spec"]["publishNotReadyAddresses"] is True  # a recovering pod is scraped


@pytest.mark.parametrize(("values", "message"), [
    ("rbac: {mod: cluster}\n", "additional properties 'mod' not allowed"),
    ("rbac: {mode: clusterwide}\n", "value must be one of 'namespaced', 'cluster'"),
    ("replicaCount: two\n", "got string, want integer"),
    ("ingres: {enabled: true}\n", "additional properties 'ingres' not allowed"),
    ("rbac: {actions: [reboot_cluster]}\n", "value must be one of 'restart_pod'"),
    ("kubernetes: {namespaces: [Shop_Prod]}\n", "Shop_Prod"),
    ("networkPolicy: {enabled: 'yes'}\n", "got string, want boolean"),
])
def test_values_schema_rejects_mistyped_values(helm: str, tmp_path: Path, values: str,
                                               message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(values)
    proc = run(helm, "template", "rel", str(CHART), "-f", str(f))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
