"""Typed settings for the whole agent.

One frozen :class:`Settings` object is built at the entry point (CLI) from, in
order of precedence: explicit overrides, environment variables
(``SRE_AGENT_<SECTION>__<FIELD>``), and an optional YAML file
(``SRE_AGENT_CONFIG`` or ``--config``). It is then passed down; no other module
reads ``os.environ``.

Secrets (``SecretStr`` fields) are accepted from the environment only: a secret
found in the YAML file is a configuration error, so config files can be
committed and shared without leaking credentials.

Examples
--------
>>> s = load_settings(env={"SRE_AGENT_KAFKA__BROKER": "kafka://127.0.0.1:9999"})
>>> s.kafka.broker
'kafka://127.0.0.1:9999'
>>> s.actions.dry_run
True
>>> try:
...     load_settings(env={"SRE_AGENT_KAFKA__PARTITIONS": "zero"})
... except ConfigError as exc:
...     print(exc)
invalid configuration: kafka.partitions: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

__all__ = ["ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "SRE_AGENT_"


class ConfigError(ValueError):
    """Raised when configuration is invalid; the message names the bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    broker: str = "kafka://127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1, le=1024)
    replication: int = Field(default=1, ge=1, le=7)


class WorkerSettings(_Section):
    app_id: str = "sre-agent"
    data_dir: Path = Path("./data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    #: how often (seconds) dirty per-series model state is written to the table
    checkpoint_interval: float = Field(default=5.0, gt=0)
    #: Faust stream buffer: messages taken per batch by the metrics agent
    batch_size: int = Field(default=200, ge=1)
    batch_timeout: float = Field(default=0.05, gt=0)
    log_level: str = "INFO"
    log_json: bool = True


class PostgresSettings(_Section):
    dsn: SecretStr | None = None


class AnomalySettings(_Section):
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    #: per-metric-name overrides of the threshold
    overrides: dict[str, float] = Field(default_factory=dict)
    warmup_samples: int = Field(default=30, ge=1)


class SlackSettings(_Section):
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    channel: str = "#sre-approvals"
    base_url: str = "https://slack.com/api/"


class AnthropicSettings(_Section):
    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = "claude-sonnet-4-5"
    timeout: float = Field(default=30.0, gt=0)
    max_tokens_per_incident: int = Field(default=8000, ge=256)


class QdrantSettings(_Section):
    url: str | None = None
    api_key: SecretStr | None = None
    path: Path | None = None
    collection_prefix: str = "sre"


class KubernetesSettings(_Section):
    enabled: bool = False
    in_cluster: bool = False
    kubeconfig: Path | None = None
    host: str | None = None
    token: SecretStr | None = None


class AwsSettings(_Section):
    enabled: bool = False
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class ActionSettings(_Section):
    #: dry-run by default: actions are planned, audited and simulated, not executed
    dry_run: bool = True
    #: auto-remediation (LOW tier executes without a human) is off by default
    auto_remediation: bool = False
    max_actions_per_resource_per_hour: int = Field(default=3, ge=1)
    protected: list[str] = Field(
        default_factory=lambda: [
            "wallet*",
            "*balance*",
            "order*",
            "matching-engine*",
            "*-db",
            "postgres*",
        ]
    )
    playbooks_dir: Path | None = None


class ApiSettings(_Section):
    #: bearer tokens -> role (viewer, operator, approver, admin); env only
    tokens: dict[str, str] = Field(default_factory=dict)
    webhook_token: SecretStr | None = None


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    postgres: PostgresSettings = PostgresSettings()
    anomaly_detection: AnomalySettings = AnomalySettings()
    slack: SlackSettings = SlackSettings()
    anthropic: AnthropicSettings = AnthropicSettings()
    qdrant: QdrantSettings = QdrantSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    aws: AwsSettings = AwsSettings()
    actions: ActionSettings = ActionSettings()
    api: ApiSettings = ApiSettings()

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.kafka.topic_prefix}{name}"


#: fields that may only come from the environment (secrets)
_ENV_ONLY = {
    ("postgres", "dsn"),
    ("slack", "bot_token"),
    ("slack", "signing_secret"),
    ("anthropic", "api_key"),
    ("qdrant", "api_key"),
    ("kubernetes", "token"),
    ("aws", "access_key_id"),
    ("aws", "secret_access_key"),
    ("api", "tokens"),
    ("api", "webhook_token"),
}


def _env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``SRE_AGENT_A__B=v`` variables into ``{"a": {"b": v}}``.

    Values that look like JSON/YAML collections (``[..]`` or ``{..}``) are parsed.
    """
    tree: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"invalid configuration: {key}: not valid JSON/YAML: {exc}") from exc
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"invalid configuration: {key}: conflicts with another variable")
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _format(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from a YAML file, the environment and overrides.

    Parameters
    ----------
    config_file
        Optional YAML file; falls back to ``SRE_AGENT_CONFIG`` in ``env``.
    env
        The environment mapping (the entry point passes ``os.environ``).
    overrides
        Nested values that win over everything (used by tests and the CLI).
    """
    env = dict(env or {})
    data: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"invalid configuration: cannot read {p}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid configuration: {p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"invalid configuration: {p} must hold a mapping at top level")
        for section, field in sorted(_ENV_ONLY):
            sec = loaded.get(section)
            if isinstance(sec, dict) and sec.get(field) is not None:
                var = f"{ENV_PREFIX}{section.upper()}__{field.upper()}"
                raise ConfigError(
                    f"invalid configuration: {section}.{field} is a secret and must come from "
                    f"the environment ({var}), not from {p}"
                )
        data = loaded
    data = _merge(data, _env_tree(env))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
