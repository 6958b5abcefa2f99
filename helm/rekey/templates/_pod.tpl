{{/*
The pod template (metadata and spec) of the CronJob's Jobs and of the Deployment (mode: run):
the same pod, but `rekey run` (the schedule, the metrics port and probes, a grace period for
SIGTERM) instead of the one-shot `command` in mode run. Included under each `template:` key,
indented to it.
*/}}
{{- define "rekey.podTemplate" -}}
metadata:
  labels:
    {{- include "rekey.selectorLabels" . | nindent 4 }}
    {{- with .Values.commonLabels }}
    {{- tpl (toYaml .) $ | nindent 4 }}
    {{- end }}
    {{- with .Values.podLabels }}
    {{- tpl (toYaml .) $ | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- tpl (toYaml .) $ | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "rekey.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- if eq .Values.mode "run" }}
  terminationGracePeriodSeconds: {{ .Values.run.terminationGracePeriodSeconds }}
  {{- else }}
  restartPolicy: Never
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- include "rekey.tplvalues" (dict "value" . "ctx" $) | nindent 4 }}
  {{- end }}
  containers:
    - name: rekey
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- if eq .Values.mode "run" }}
        - run
        - --config
        - /etc/rekey/{{ .Values.inventory.key }}
        - --schedule
        - {{ .Values.schedule | quote }}
        - --timezone
        - {{ .Values.timeZone | quote }}
        - --metrics-listen
        - {{ printf "0.0.0.0:%d" (int .Values.run.port) | quote }}
        {{- else }}
        - {{ .Values.command }}
        - --config
        - /etc/rekey/{{ .Values.inventory.key }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: REKEY_LOG_FORMAT
          value: json
        # Who the audit trail names as the actor (docs/src/operating.md, "Audit trail").
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: POD_SERVICE_ACCOUNT
          valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
        {{- if gt (int .Values.shards) 1 }}
        - name: REKEY_SHARD_COUNT
          value: {{ .Values.shards | quote }}
        {{- end }}
        {{- if .Values.metrics.pushgateway.url }}
        - name: REKEY_PUSHGATEWAY
          value: {{ .Values.metrics.pushgateway.url | quote }}
        - name: REKEY_METRICS_INSTANCE
          value: {{ .Values.metrics.instance | default (include "rekey.fullname" .) | quote }}
        {{- end }}
        {{- with .Values.webhook }}
        {{- if .existingSecret }}
        # Events to a webhook (docs/src/notifications.md); the URL stays in its Secret.
        - name: REKEY_WEBHOOK_URL
          valueFrom: {secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .key | quote }}}}
        - name: REKEY_WEBHOOK_FORMAT
          value: {{ .format | quote }}
        {{- with .events }}
        - name: REKEY_WEBHOOK_EVENTS
          value: {{ join "," . | quote }}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- if .Values.persistence.auditLog.enabled }}
        - name: REKEY_AUDIT_LOG
          value: {{ printf "%s/%s" (trimSuffix "/" .Values.persistence.mountPath) .Values.persistence.auditLog.file | quote }}
        {{- end }}
        {{- with .Values.env }}
        {{- include "rekey.tplvalues" (dict "value" . "ctx" $) | nindent 8 }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- include "rekey.tplvalues" (dict "value" . "ctx" $) | nindent 8 }}
        {{- end }}
      {{- if or .Values.bootstrap.existingSecret .Values.extraEnvFrom }}
      envFrom:
        {{- if .Values.bootstrap.existingSecret }}
        - secretRef:
            name: {{ .Values.bootstrap.existingSecret }}
        {{- end }}
        {{- with .Values.extraEnvFrom }}
        {{- include "rekey.tplvalues" (dict "value" . "ctx" $) | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if eq .Values.mode "run" }}
      ports:
        - name: metrics
          containerPort: {{ .Values.run.port }}
          protocol: TCP
      # 200 while the process answers (src/observe/serve.rs).
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.run.livenessProbe | nindent 8 }}
      # 200 while the scheduler runs, 503 from SIGTERM on, so the pod leaves the Service first.
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml .Values.run.readinessProbe | nindent 8 }}
      {{- end }}
      {{- with .Values.containerSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: inventory
          mountPath: /etc/rekey
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if .Values.serviceAccount.projectedToken.enabled }}
        - name: projected-token
          mountPath: {{ .Values.serviceAccount.projectedToken.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.persistence.enabled }}
        - name: data
          mountPath: {{ .Values.persistence.mountPath }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- include "rekey.tplvalues" (dict "value" . "ctx" $) | nindent 8 }}
        {{- end }}
  volumes:
    - name: inventory
      configMap:
        name: {{ include "rekey.inventoryConfigMap" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- with .Values.serviceAccount.projectedToken }}
    {{- if .enabled }}
    - name: projected-token
      projected:
        sources:
          - serviceAccountToken:
              path: token
              audience: {{ .audience | quote }}
              expirationSeconds: {{ .expirationSeconds }}
    {{- end }}
    {{- end }}
    {{- if .Values.persistence.enabled }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ include "rekey.persistenceClaim" . }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- include "rekey.tplvalues" (dict "value" . "ctx" $) | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
