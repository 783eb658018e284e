"""The Helm chart lints and renders; the rendered RBAC is exactly what the actions need.

(``test_chart_ops.py`` covers the RBAC modes, NetworkPolicy, Ingress, ServiceMonitor,
values schema and the validation of every manifest against the Kubernetes schemas.)

Helm is built from source by ``scripts/install-helm.sh`` (Go module proxy only)
and cached; a machine without Go makes these tests fail, never skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sre_agent.config import load_settings
from sre_agent.streams.collectors import load_prom_queries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sre-agent"

#: read rules, always (dry-run too: the executor observes and snapshots its targets).
#: The seed's services/configmaps/nodes reads are gone: nothing reads them (ConfigMaps
#: only by name, for enable_rate_limit; nodes are cluster-scoped).
READ_RULES = [
    {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets"],
     "verbs": ["get", "list", "watch"]},
]
#: write rules of the default rbac.actions, only with actions.dryRun=false. No
#: deployments/rollback: that subresource only existed in extensions/v1beta1; rollout
#: undo/restart patch the workload, scale patches the scale subresource.
WRITE_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale", "statefulsets/scale"],
     "verbs": ["patch"]},
]
DEFAULT_RULES = READ_RULES

FULL_VALUES = """
replicaCount: 3
kafka: {broker: "kafka://b-1.msk:9092;kafka://b-2.msk:9092", partitions: 12, replication: 3, topicPrefix: "prod."}
worker: {tableStandbyReplicas: 2}
persistence: {enabled: false}
collectors:
  prometheus: {enabled: true, url: "http://mimir-gateway/prometheus", headers: {X-Scope-OrgID: exchange}}
  queries:
    - {name: order_latency_p99_seconds, expr: "histogram_quantile(0.99, sum by (le, service) (rate(order_latency_seconds_bucket[5m])))", interval: 30, category: business}
  loki:
    enabled: true
    queries: [{name: errors, expr: '{namespace="trading"} |= "ERROR"'}]
  cloudwatch: {enabled: true, region: ap-northeast-1, namespaces: ["AWS/RDS"]}
config:
  anomaly_detection: {threshold: 0.8}
  slack: {channel: "#sre-oncall"}
playbooks:
  restart-crashloop.yaml: |
    name: restart-crashloop
    triggers: [{reason: CrashLoopBackOff}]
    actions: [{action: delete_pod}]
secrets:
  create: true
  values: {SRE_AGENT_POSTGRES__DSN: "postgresql://agent:pw@db/agent", SRE_AGENT_API__WEBHOOK_TOKEN: "t0k"}
  refs: [{name: SRE_AGENT_ANTHROPIC__API_KEY, secretName: llm, key: api-key}]
serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/sre-agent"}}
ingress: {enabled: true, className: alb, hosts: [{host: sre.example.com, paths: [{path: /api, pathType: Prefix}]}]}
serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
"""


@pytest.fixture(scope="session")
def helm() -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install-helm.sh")], capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, f"install-helm.sh failed:\n{proc.stderr[-3000:]}"
    return proc.stdout.strip().splitlines()[-1]


def run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, tmp_path: Path, values: str | None = None, *extra: str) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", "sre"]
    if values is not None:
        f = tmp_path / "values.yaml"
        f.write_text(values)
        args += ["-f", str(f)]
    proc = run(helm, *args, *extra)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in by_kind(docs, kind)])
    return found[0]


def test_chart_lints_with_default_and_full_values(helm: str, tmp_path: Path) -> None:
    proc = run(helm, "lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    f = tmp_path / "full.yaml"
    f.write_text(FULL_VALUES)
    proc = run(helm, "lint", "--strict", str(CHART), "-f", str(f))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_render_has_least_privilege_rbac_and_a_statefulset_on_pvcs(
        helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    assert sorted(d["kind"] for d in docs) == sorted([
        "Role", "RoleBinding", "ConfigMap", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget",
        "Service", "Service", "ServiceAccount", "StatefulSet"])
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == "sre"
    assert role["rules"] == DEFAULT_RULES  # dry-run by default: no write rule at all
    acting = one(render(helm, tmp_path, "actions: {dryRun: false}\n"), "Role")
    assert acting["rules"] == READ_RULES + WRITE_RULES
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in acting["rules"])
    binding = one(docs, "RoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "sre"}]

    sts = one(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 2 and spec["podManagementPolicy"] == "Parallel"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["args"] == ["worker"]
    assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/data", "/etc/sre-agent/config.yaml"}
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "envFrom" not in c  # no Secret configured by default
    headless = one(docs, "Service", "rel-sre-agent-headless")
    assert headless["spec"]["clusterIP"] == "None" and spec["serviceName"] == "rel-sre-agent-headless"


def test_rendered_config_is_valid_agent_settings(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, FULL_VALUES)
    cm = one(docs, "ConfigMap", "rel-sre-agent")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cm["data"]["config.yaml"])
    queries = tmp_path / "queries.yaml"
    queries.write_text(cm["data"]["queries.yaml"])
    s = load_settings(config_file=cfg, overrides={
        "collectors": {"prometheus": {"queries_file": str(queries)}}})
    assert s.kafka.partitions == 12 and s.kafka.topic_prefix == "prod."
    assert s.worker.table_standby_replicas == 2 and s.worker.web_host == "0.0.0.0"
    assert s.worker.data_dir == Path("/data")
    assert s.actions.dry_run is True
    assert s.kubernetes.namespaces == ["sre"]  # namespaced RBAC: the agent watches its Roles' namespaces
    assert str(s.actions.playbooks_dir) == "/etc/sre-agent/playbooks"
    assert s.anomaly_detection.threshold == 0.8 and s.slack.channel == "#sre-oncall"
    assert s.collectors.prometheus.headers == {"X-Scope-OrgID": "exchange"}
    assert [q.name for q in load_prom_queries(s)] == ["order_latency_p99_seconds"]
    assert s.collectors.loki.queries[0].expr == '{namespace="trading"} |= "ERROR"'
    assert s.collectors.cloudwatch.namespaces == ["AWS/RDS"] and s.aws.region == "ap-northeast-1"
    playbooks = one(docs, "ConfigMap", "rel-sre-agent-playbooks")
    assert yaml.safe_load(playbooks["data"]["restart-crashloop.yaml"])["name"] == "restart-crashloop"


def test_full_values_render_optional_objects(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, FULL_VALUES)
    sts = one(docs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert sts["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in sts["spec"]
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]
    secret = one(docs, "Secret")
    assert set(secret["stringData"]) == {"SRE_AGENT_POSTGRES__DSN", "SRE_AGENT_API__WEBHOOK_TOKEN"}
    assert c["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert {"name": "SRE_AGENT_ANTHROPIC__API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "llm", "key": "api-key"}}} in c["env"]
    assert "checksum/secret" in sts["spec"]["template"]["metadata"]["annotations"]
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/etc/sre-agent/queries.yaml"}
    ing = one(docs, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-sre-agent", "port": {"name": "http"}}
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/sre-agent")
    assert one(docs, "Role")["rules"] == DEFAULT_RULES  # values never widen RBAC by themselves


def test_rbac_can_be_left_to_the_cluster_admin_and_secrets_referenced(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, "rbac: {create: false}\nserviceAccount: {create: false, name: ops}\n"
                                  "secrets: {existingSecret: sre-agent-env}\n")
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    assert not by_kind(docs, "ServiceAccount") and not by_kind(docs, "Secret")
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "sre-agent-env"}}]


@pytest.mark.parametrize(("values", "message"), [
    ("replicaCount: 5\nkafka: {partitions: 4}\n", "kafka.partitions (4) must be >= replicaCount (5)"),
    ("secrets: {create: true, values: {PASSWORD: x}}\n", "must be an SRE_AGENT_* variable name"),
])
def test_bad_values_fail_with_a_clear_message(helm: str, tmp_path: Path, values: str,
                                              message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(values)
    proc = run(helm, "template", "rel", str(CHART), "-f", str(f))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
