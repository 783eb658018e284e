{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "sre-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sre-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sre-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sre-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sre-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sre-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sre-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sre-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Name of the RBAC objects: the release's full name AND its namespace. A ClusterRole is
cluster-scoped, and a Role may sit in a watched namespace shared by two releases, so the
full name alone would collide across namespaces.
*/}}
{{- define "sre-agent.rbacName" -}}
{{- printf "%s-%s" (include "sre-agent.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/*
Namespaces the agent watches and acts in, as a JSON array. rbac.mode=namespaced: the
listed ones, else the release namespace. rbac.mode=cluster: the listed ones, [] = all.
*/}}
{{- define "sre-agent.watchedNamespaces" -}}
{{- $ns := .Values.kubernetes.namespaces | default list -}}
{{- if and (ne .Values.rbac.mode "cluster") (not $ns) -}}
{{- $ns = list .Release.Namespace -}}
{{- end -}}
{{- $ns | uniq | toJson -}}
{{- end -}}

{{/* The Secret loaded with envFrom: an existing one, or the one this chart creates. */}}
{{- define "sre-agent.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.create -}}
{{- include "sre-agent.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
The agent's config.yaml (settings keys in snake_case). Values under .Values.config
are merged last and win. Per-pod settings (web host, data dir) are set here too.
*/}}
{{- define "sre-agent.config" -}}
{{- $v := .Values -}}
{{- $worker := dict "app_id" $v.worker.appId "web_host" "0.0.0.0" "web_port" (int $v.worker.port) "data_dir" "/data" "log_level" $v.worker.logLevel "log_json" $v.worker.logJson "table_standby_replicas" (int $v.worker.tableStandbyReplicas) -}}
{{- $kafka := dict "broker" $v.kafka.broker "topic_prefix" $v.kafka.topicPrefix "partitions" (int $v.kafka.partitions) "replication" (int $v.kafka.replication) "security_protocol" ($v.kafka.securityProtocol | default "PLAINTEXT") "sasl_mechanism" ($v.kafka.saslMechanism | default "SCRAM-SHA-512") -}}
{{- with $v.kafka.saslUsername }}{{ $_ := set $kafka "sasl_username" . }}{{ end -}}
{{- with $v.kafka.sslCaFile }}{{ $_ := set $kafka "ssl_cafile" . }}{{ end -}}
{{- with $v.kafka.sslCertFile }}{{ $_ := set $kafka "ssl_certfile" . }}{{ end -}}
{{- with $v.kafka.sslKeyFile }}{{ $_ := set $kafka "ssl_keyfile" . }}{{ end -}}
{{- $actions := dict "dry_run" $v.actions.dryRun "auto_remediation" $v.actions.autoRemediation -}}
{{- if $v.playbooks -}}
{{- $_ := set $actions "playbooks_dir" "/etc/sre-agent/playbooks" -}}
{{- end -}}
{{- $k8s := dict "enabled" $v.kubernetes.enabled "in_cluster" true "namespaces" (include "sre-agent.watchedNamespaces" . | fromJsonArray) -}}
{{- $c := $v.collectors -}}
{{- $prom := dict "enabled" $c.prometheus.enabled "url" $c.prometheus.url "interval" $c.prometheus.interval "headers" ($c.prometheus.headers | default dict) -}}
{{- if $c.queries -}}
{{- $_ := set $prom "queries_file" "/etc/sre-agent/queries.yaml" -}}
{{- end -}}
{{- $loki := dict "enabled" $c.loki.enabled "url" $c.loki.url "interval" $c.loki.interval -}}
{{- if $c.loki.queries -}}
{{- $_ := set $loki "queries" $c.loki.queries -}}
{{- end -}}
{{- $cw := dict "enabled" $c.cloudwatch.enabled "interval" $c.cloudwatch.interval "period" (int $c.cloudwatch.period) "namespaces" $c.cloudwatch.namespaces -}}
{{- $collectors := dict "prometheus" $prom "loki" $loki "cloudwatch" $cw "remote_write" (dict "enabled" $c.remoteWrite.enabled) -}}
{{- $cfg := dict "kafka" $kafka "worker" $worker "actions" $actions "kubernetes" $k8s "aws" (dict "region" $c.cloudwatch.region) "collectors" $collectors -}}
{{- $n := $v.notify | default dict -}}
{{- $notify := dict -}}
{{- with $n.sinks }}{{ $_ := set $notify "sinks" . }}{{ end -}}
{{- with $n.consoleUrl }}{{ $_ := set $notify "console_url" . }}{{ end -}}
{{- if $notify }}{{ $_ := set $cfg "notify" $notify }}{{ end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy ($v.config | default dict))) -}}
{{- end -}}

{{/*
Checks of the notification values: a sink's credentials come from a Secret
(notify.secrets), never from values; config.notify may not carry secrets either.
*/}}
{{- define "sre-agent.notifyChecks" -}}
{{- $n := .Values.notify | default dict -}}
{{- $secrets := $n.secrets | default dict -}}
{{- $cn := (.Values.config | default dict).notify | default dict -}}
{{- range $f := list "secrets" "wecom_webhook_url" "pagerduty_routing_key" -}}
{{- if hasKey $cn $f -}}
{{- fail (printf "config.notify.%s is a secret: reference it from a Secret with notify.secrets (or notify.wecomWebhookUrl / notify.pagerdutyRoutingKey)" $f) -}}
{{- end -}}
{{- end -}}
{{- range $i, $sink := $n.sinks -}}
{{- $body := $sink -}}
{{- range $k, $b := $sink }}{{ if hasSuffix "_sink" $k }}{{ $body = $b }}{{ end }}{{ end -}}
{{- with $body.secret -}}
{{- if and (not (hasKey $secrets .)) (not $.Values.secrets.existingSecret) -}}
{{- fail (printf "notify.sinks[%d] (%s) names secret %q: add notify.secrets.%s: {secretName: <Secret>, key: <key>}" $i ($body.name | default "?") . .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Environment variables of the notification credentials, each from a Secret key.
*/}}
{{- define "sre-agent.notifyEnv" -}}
{{- $n := .Values.notify | default dict -}}
{{- range $name, $ref := ($n.secrets | default dict) }}
- name: SRE_AGENT_NOTIFY__SECRETS__{{ upper $name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "notify.secrets.%s.secretName is required" $name) $ref.secretName }}
      key: {{ required (printf "notify.secrets.%s.key is required" $name) $ref.key }}
{{- end }}
{{- range $var, $field := dict "SRE_AGENT_SLACK__BOT_TOKEN" "slackBotToken" "SRE_AGENT_SLACK__SIGNING_SECRET" "slackSigningSecret" "SRE_AGENT_NOTIFY__WECOM_WEBHOOK_URL" "wecomWebhookUrl" "SRE_AGENT_NOTIFY__PAGERDUTY_ROUTING_KEY" "pagerdutyRoutingKey" }}
{{- with (get $n $field) }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "notify.%s.secretName is required" $field) .secretName }}
      key: {{ required (printf "notify.%s.key is required" $field) .key }}
{{- end }}
{{- end }}
{{- end -}}
