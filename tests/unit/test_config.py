"""Settings: env + YAML, secrets only from the environment, errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sre_agent.config import ConfigError, load_settings


def test_defaults_are_safe() -> None:
    s = load_settings(env={})
    assert s.actions.dry_run is True
    assert s.actions.auto_remediation is False
    assert s.anomaly_detection.threshold == 0.7


def test_yaml_then_env_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  partitions: 8\n  topic_prefix: prod.\nworker:\n  web_port: 7000\n")
    s = load_settings(cfg, env={"SRE_AGENT_WORKER__WEB_PORT": "7100"})
    assert s.kafka.partitions == 8 and s.kafka.topic_prefix == "prod."
    assert s.worker.web_port == 7100
    assert s.topic("metrics") == "prod.metrics"


def test_config_file_from_env_and_nested_json_values(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anomaly_detection:\n  overrides: {error_rate: 0.5}\n")
    s = load_settings(env={"SRE_AGENT_CONFIG": str(cfg),
                           "SRE_AGENT_API__TOKENS": '{"tok": "admin:root"}',
                           "SRE_AGENT_SLACK__BOT_TOKEN": "xoxb-1"})
    assert s.anomaly_detection.overrides == {"error_rate": 0.5}
    assert s.api.tokens == {"tok": "admin:root"}
    assert s.slack.bot_token is not None and s.slack.bot_token.get_secret_value() == "xoxb-1"
    assert "xoxb-1" not in repr(s)  # SecretStr never prints


def test_secret_in_yaml_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anthropic:\n  api_key: sk-ant-123\n")
    with pytest.raises(ConfigError, match=r"anthropic.api_key is a secret.*SRE_AGENT_ANTHROPIC__API_KEY"):
        load_settings(cfg, env={})


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SRE_AGENT_KAFKA__PARTITIONS": "0"}, "kafka.partitions"),
        ({"SRE_AGENT_ANOMALY_DETECTION__THRESHOLD": "1.5"}, "anomaly_detection.threshold"),
        ({"SRE_AGENT_WORKER__WEB_PORT": "http"}, "worker.web_port"),
        ({"SRE_AGENT_KAFKA__BROKR": "x"}, "kafka.brokr"),
    ],
)
def test_invalid_config_names_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"invalid configuration: {field}"):
        load_settings(env=env)


def test_unreadable_or_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, env={})


def test_cli_reports_bad_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from sre_agent.cli import main

    rc = main(["schemas", "export", str(tmp_path)], env={"SRE_AGENT_KAFKA__PARTITIONS": "x"})
    assert rc == 2
    assert "kafka.partitions" in capsys.readouterr().err
