{{/* The scopegate container; `native` adds restartPolicy: Always (initContainers entry). */}}
{{- define "scopegate.sidecarContainer" -}}
- name: {{ .Values.sidecar.name }}
  image: {{ include "scopegate.image" (dict "image" .Values.sidecar.image "default" .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
  {{- if .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - --config
    - /etc/scopegate/config.toml
  env:
    {{- with .Values.sidecar.log.level }}
    - name: SCOPEGATE_LOG_LEVEL
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.sidecar.log.format }}
    - name: SCOPEGATE_LOG_FORMAT
      value: {{ . | quote }}
    {{- end }}
    {{- if .Values.fleet.enabled }}
    - name: SCOPEGATE_ADMIN_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "scopegate.fleetSecretName" . }}
          key: {{ .Values.fleet.adminTokenKey }}
    {{- if and .Values.fleet.redisPasswordKey (or .Values.fleet.existingSecret .Values.fleet.redisPassword) }}
    - name: SCOPEGATE_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "scopegate.fleetSecretName" . }}
          key: {{ .Values.fleet.redisPasswordKey }}
    {{- end }}
    {{- end }}
    {{- with .Values.sidecar.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ .Values.sidecar.ports.http }}
      protocol: TCP
    - name: admin
      containerPort: {{ .Values.sidecar.ports.admin }}
      protocol: TCP
    {{- with .Values.sidecar.ports.forwardAuth }}
    - name: forward-auth
      containerPort: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.sidecar.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.sidecar.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.sidecar.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and (gt (int .Values.sidecar.preStopSleepSeconds) 0) (include "scopegate.sleepActionSupported" .) }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ .Values.sidecar.preStopSleepSeconds | int }}
  {{- end }}
  {{- with .Values.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.sidecar.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/scopegate
      readOnly: true
    {{- if .Values.introspection.enabled }}
    - name: client-secret
      mountPath: /var/run/secrets/scopegate
      readOnly: true
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      mountPath: /var/run/secrets/scopegate-tls
      readOnly: true
    {{- with .Values.tls.clientCaSecretName }}
    - name: tls-client-ca
      mountPath: /var/run/secrets/scopegate-client-ca
      readOnly: true
    {{- end }}
    {{- end }}
  terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

{{/* The protected application container. */}}
{{- define "scopegate.appContainer" -}}
- name: {{ .Values.app.name }}
  image: {{ include "scopegate.image" (dict "image" .Values.app.image "default" "latest") | quote }}
  imagePullPolicy: {{ .Values.app.image.pullPolicy }}
  {{- with .Values.app.command }}
  command:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.args }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: app
      containerPort: {{ .Values.app.port }}
      protocol: TCP
  {{- with .Values.app.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $appSleep := include "scopegate.appPreStopSeconds" . | int }}
  {{- if and (gt $appSleep 0) (include "scopegate.sleepActionSupported" .) }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $appSleep }}
  {{- end }}
  {{- with .Values.app.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.app.volumeMounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
