{{/* Chart name. */}}
{{- define "scopegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters. */}}
{{- define "scopegate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scopegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the lifetime of the release. */}}
{{- define "scopegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scopegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scopegate.labels" -}}
helm.sh/chart: {{ include "scopegate.chart" . }}
{{ include "scopegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: oauth-proxy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "scopegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scopegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. Args: dict "image" <image values> "default" <tag>. */}}
{{- define "scopegate.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (toString (default .default .image.tag)) }}
{{- end }}
{{- end }}

{{- define "scopegate.configMapName" -}}
{{- default (printf "%s-config" (include "scopegate.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}

{{- define "scopegate.secretName" -}}
{{- default (printf "%s-client-secret" (include "scopegate.fullname" .)) .Values.introspection.existingSecret }}
{{- end }}

{{- define "scopegate.fleetSecretName" -}}
{{- default (printf "%s-fleet" (include "scopegate.fullname" .)) .Values.fleet.existingSecret }}
{{- end }}

{{/* The scopegate config file rendered through tpl. */}}
{{- define "scopegate.configToml" -}}
{{- $raw := index .Values.config "config.toml" | default "" }}
{{- tpl $raw . }}
{{- end }}

{{/*
listener.drain_timeout in whole seconds (rounded up): read from config.toml, or
config.drainTimeoutSeconds with an existing ConfigMap. scopegate's default is 30s.
*/}}
{{- define "scopegate.drainSeconds" -}}
{{- if .Values.config.existingConfigMap }}
{{- .Values.config.drainTimeoutSeconds | int }}
{{- else }}
{{- $line := regexFind "(?m)^\\s*drain_timeout\\s*=\\s*\"[0-9]+(ms|s|m|h|d)\"" (include "scopegate.configToml" .) }}
{{- if $line }}
{{- $value := regexFind "[0-9]+(ms|s|m|h|d)" $line }}
{{- $n := regexFind "^[0-9]+" $value | int }}
{{- $unit := trimPrefix (toString $n) $value }}
{{- if eq $unit "ms" }}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" }}{{ $n }}
{{- else if eq $unit "m" }}{{ mul $n 60 }}
{{- else if eq $unit "h" }}{{ mul $n 3600 }}
{{- else }}{{ mul $n 86400 }}
{{- end }}
{{- else }}30
{{- end }}
{{- end }}
{{- end }}

{{/* Seconds of the app container's preStop sleep (null: same as scopegate's). */}}
{{- define "scopegate.appPreStopSeconds" -}}
{{- if kindIs "invalid" .Values.app.preStopSleepSeconds }}
{{- .Values.sidecar.preStopSleepSeconds | int }}
{{- else }}
{{- .Values.app.preStopSleepSeconds | int }}
{{- end }}
{{- end }}

{{/* "true" when the `sleep` lifecycle action may be used (beta and on by default from 1.30). */}}
{{- define "scopegate.sleepActionSupported" -}}
{{- if or .Values.sidecar.forceSleepAction (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}true{{ end }}
{{- end }}

{{- define "scopegate.terminationGracePeriodSeconds" -}}
{{- $drain := include "scopegate.drainSeconds" . | int }}
{{- $sidecar := .Values.sidecar.preStopSleepSeconds | int }}
{{- $app := include "scopegate.appPreStopSeconds" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $sidecar $app $drain 10 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if le $grace (add $sidecar $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed sidecar.preStopSleepSeconds + listener.drain_timeout (%d + %d s), or in-flight requests are cut off" $grace $sidecar $drain) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* Fails early when config.toml cannot work in this pod. */}}
{{- define "scopegate.validateConfig" -}}
{{- if not .Values.config.existingConfigMap }}
{{- $toml := include "scopegate.configToml" . }}
{{- if not (regexMatch "(?m)^\\s*\\[listener\\]" $toml) }}
{{- fail "config.toml needs a [listener] section" }}
{{- end }}
{{- $http := toString .Values.sidecar.ports.http }}
{{- $admin := toString .Values.sidecar.ports.admin }}
{{- $app := toString .Values.app.port }}
{{- if not (regexMatch (printf "\"(0\\.0\\.0\\.0|\\[::\\]):%s\"" $http) $toml) }}
{{- fail (printf "config.toml: [listener] address must be \"0.0.0.0:%s\" (sidecar.ports.http) so the Service can reach it" $http) }}
{{- end }}
{{- if not (regexMatch (printf "\"(0\\.0\\.0\\.0|\\[::\\]):%s\"" $admin) $toml) }}
{{- fail (printf "config.toml: [admin] address must be \"0.0.0.0:%s\" (sidecar.ports.admin) so the kubelet can probe it" $admin) }}
{{- end }}
{{- with .Values.sidecar.ports.forwardAuth }}
{{- if not (regexMatch (printf "(?m)^\\s*\\[forward_auth\\]" ) $toml) }}
{{- fail (printf "sidecar.ports.forwardAuth is %v but config.toml has no [forward_auth] section" .) }}
{{- end }}
{{- if not (regexMatch (printf "\"(0\\.0\\.0\\.0|\\[::\\]):%v\"" .) $toml) }}
{{- fail (printf "config.toml: [forward_auth] listen must be \"0.0.0.0:%v\" (sidecar.ports.forwardAuth) so the ingress can reach it" .) }}
{{- end }}
{{- end }}
{{- if not (regexMatch (printf "\"http://(127\\.0\\.0\\.1|localhost|\\[::1\\]):%s/?\"" $app) $toml) }}
{{- fail (printf "config.toml: [upstream] url must be \"http://127.0.0.1:%s\" (app.port)" $app) }}
{{- end }}
{{- end }}
{{- if eq (int .Values.app.port) (int .Values.sidecar.ports.http) }}
{{- fail "app.port must differ from sidecar.ports.http: both containers share the pod's network namespace" }}
{{- end }}
{{- if eq (int .Values.app.port) (int .Values.sidecar.ports.admin) }}
{{- fail "app.port must differ from sidecar.ports.admin" }}
{{- end }}
{{- if and .Values.fleet.enabled (not .Values.fleet.existingSecret) (lt (len .Values.fleet.adminToken) 16) }}
{{- fail "fleet.enabled needs fleet.existingSecret or fleet.adminToken (at least 16 characters)" }}
{{- end }}
{{- if and .Values.introspection.enabled (not .Values.introspection.existingSecret) (not .Values.introspection.clientSecret) }}
{{- fail "introspection.enabled needs introspection.existingSecret or introspection.clientSecret" }}
{{- end }}
{{- end }}

{{/* PromQL matchers for this release's scopegate series. */}}
{{- define "scopegate.promSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "namespace=%q, pod=~%q" .Release.Namespace (printf "%s-[a-z0-9]+-[a-z0-9]+" (include "scopegate.fullname" .)) }}
{{- end }}
{{- end }}
