"""Issue 16, deliverable 1 in the chart: notification sinks routed in values, credentials
only from Kubernetes Secrets.

``notify.sinks`` is rendered into the agent's config (and loads as valid settings with the
pod's environment); each credential (``notify.secrets``, the Slack tokens, the default
WeCom URL and PagerDuty key) becomes an environment variable from a Secret key, never a
value in the ConfigMap. ``values.schema.json`` refuses credential fields in a sink and
malformed references; the templates refuse a sink naming a credential that is not
referenced, and secrets under ``config.notify``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from sre_agent.config import load_settings
from tests.integration.test_chart_ops import K8S_VERSIONS
from tests.integration.test_helm import CHART, helm, one, render, run

pytestmark = pytest.mark.integration

__all__ = ["helm"]  # fixture

VALUES = """
notify:
  consoleUrl: "https://sre.example.com/console/incidents/{incident_id}"
  sinks:
    - {type: slack, name: oncall, channel: "#sre-oncall"}
    - pagerduty_sink:
        name: payments-pager
        secret: pagerduty-payments
        escalate_after: 600
        scope: {include: [{severity: [critical, warning], namespace: payments}]}
    - {type: wecom, name: cn-robot, secret: wecom-robot, send_resolved: false}
    - {type: email, name: mail, smtp_host: smtp.example.com, smtp_port: 587, smtp_starttls: true,
       smtp_user: sre-agent, secret: smtp.password, to: [oncall@example.com]}
  secrets:
    pagerduty-payments: {secretName: notify-creds, key: pd-routing-key}
    wecom-robot: {secretName: notify-creds, key: wecom-url}
    smtp.password: {secretName: smtp, key: password}
  slackBotToken: {secretName: slack, key: bot-token}
  slackSigningSecret: {secretName: slack, key: signing-secret}
  pagerdutyRoutingKey: {secretName: notify-creds, key: default-pd-key}
config:
  notify: {tick_interval: 2}
"""

#: what the Secrets hold in this test (the kubelet's part: secretKeyRef -> value)
SECRET_DATA = {("notify-creds", "pd-routing-key"): "R0UT1NGKEY",
               ("notify-creds", "wecom-url"): "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
               ("smtp", "password"): "smtp-pw-123",
               ("slack", "bot-token"): "xoxb-1-2-3",
               ("slack", "signing-secret"): "s1gn1ng",
               ("notify-creds", "default-pd-key"): "DEFAULTKEY"}


def pod_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would set it from SECRET_DATA."""
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = SECRET_DATA[(ref["name"], ref["key"])]
    return env


def test_sinks_render_into_valid_settings_with_credentials_from_secrets(
        helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, VALUES)
    sts = one(docs, "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {
        "SRE_AGENT_NOTIFY__SECRETS__PAGERDUTY-PAYMENTS": {"name": "notify-creds",
                                                          "key": "pd-routing-key"},
        "SRE_AGENT_NOTIFY__SECRETS__WECOM-ROBOT": {"name": "notify-creds", "key": "wecom-url"},
        "SRE_AGENT_NOTIFY__SECRETS__SMTP.PASSWORD": {"name": "smtp", "key": "password"},
        "SRE_AGENT_SLACK__BOT_TOKEN": {"name": "slack", "key": "bot-token"},
        "SRE_AGENT_SLACK__SIGNING_SECRET": {"name": "slack", "key": "signing-secret"},
        "SRE_AGENT_NOTIFY__PAGERDUTY_ROUTING_KEY": {"name": "notify-creds",
                                                    "key": "default-pd-key"},
    }
    cm = one(docs, "ConfigMap", "rel-sre-agent")["data"]["config.yaml"]
    for value in SECRET_DATA.values():  # no credential in plain text anywhere
        assert value not in cm
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(sts, version, strict=True)

    # the agent accepts the ConfigMap with the pod's environment, as the pod would start
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cm)
    env = {k: v for k, v in pod_env(container).items() if k.startswith("SRE_AGENT_")
           and k != "SRE_AGENT_CONFIG"}
    s = load_settings(config_file=cfg, env=env)
    n = s.notify
    assert [(k.name, k.type) for k in n.sinks] == [
        ("oncall", "slack"), ("payments-pager", "pagerduty"), ("cn-robot", "wecom"),
        ("mail", "email")]
    assert {k: v.get_secret_value() for k, v in n.secrets.items()} == {
        "pagerduty-payments": "R0UT1NGKEY",
        "wecom-robot": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "smtp.password": "smtp-pw-123"}
    pager = n.sinks[1]
    assert pager.escalate_after == 600 and pager.scope.include[0].namespace == ["payments"]
    assert n.sinks[2].send_resolved is False and n.sinks[3].smtp_port == 587
    assert n.console_url == "https://sre.example.com/console/incidents/{incident_id}"
    assert n.tick_interval == 2  # config.notify merges with the chart's notify values
    assert n.pagerduty_routing_key is not None \
        and n.pagerduty_routing_key.get_secret_value() == "DEFAULTKEY"
    assert s.slack.bot_token is not None and s.slack.bot_token.get_secret_value() == "xoxb-1-2-3"


def test_default_values_render_no_notify_settings(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    assert "notify" not in one(docs, "ConfigMap", "rel-sre-agent")["data"]["config.yaml"]
    container = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in container["env"] if e["name"].startswith(("SRE_AGENT_NOTIFY",
                                                                     "SRE_AGENT_SLACK"))]


@pytest.mark.parametrize(("values", "message"), [
    # a credential written into a sink is refused by the schema (it would land in the ConfigMap)
    ("notify: {sinks: [{type: pagerduty, name: p, secret: pd, routing_key: abc}], "
     "secrets: {pd: {secretName: s, key: k}}}\n", "additional properties 'routing_key' not allowed"),
    ("notify: {sinks: [{wecom_sink: {name: w, secret: w, webhook_url: 'https://x'}}], "
     "secrets: {w: {secretName: s, key: k}}}\n", "additional properties 'webhook_url' not allowed"),
    ("notify: {sinks: [{type: email, name: m, smtp_host: h, to: [a@b], password: pw}]}\n",
     "additional properties 'password' not allowed"),
    # a sink naming a credential nobody references
    ("notify: {sinks: [{type: pagerduty, name: p, secret: pd}]}\n",
     'notify.sinks[0] (p) names secret "pd": add notify.secrets.pd'),
    ("notify: {sinks: [{pagerduty_sink: {name: p, secret: pd}}]}\n",
     'notify.sinks[0] (p) names secret "pd"'),
    # credentials through config are refused at template time, not at the pod's start
    ("config: {notify: {secrets: {pd: x}}}\n", "config.notify.secrets is a secret"),
    ("config: {notify: {pagerduty_routing_key: x}}\n",
     "config.notify.pagerduty_routing_key is a secret"),
    # references must be complete; names the environment keeps (lower case, no '__')
    ("notify: {slackBotToken: {secretName: s}}\n", "missing property 'key'"),
    ("notify: {secrets: {PD: {secretName: s, key: k}}}\n", "does not match pattern"),
    ("notify: {secrets: {a__b: {secretName: s, key: k}}}\n", "does not match pattern"),
    ("notify: {sinks: [{type: sms, name: x}]}\n", "value must be one of 'slack'"),
    ("notify: {sinks: [{type: slack, name: s, channel: c, scope: {include: [{severity: high}]}}]}\n",
     "value must be one of 'info', 'warning', 'critical'"),
])
def test_bad_notify_values_fail_with_a_clear_message(helm: str, tmp_path: Path, values: str,
                                                     message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(values)
    proc = run(helm, "template", "rel", str(CHART), "-f", str(f))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
