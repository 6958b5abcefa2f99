{{/* The chart's name: nameOverride, else the chart's own. */}}
{{- define "rekey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The objects' name: fullnameOverride, else <release>-<name> (just <release> when it contains the
name). 52 characters at most: a CronJob's name is limited to 52 (its Jobs add 11).
*/}}
{{- define "rekey.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "rekey.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The namespace of every object: namespaceOverride, else the release's. */}}
{{- define "rekey.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rekey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rekey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rekey.labels" -}}
{{ include "rekey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ tpl (toYaml .) $ }}
{{- end }}
{{- end -}}

{{/*
metadata.annotations for every object: commonAnnotations merged with the object's own (.own), or
nothing. Use: {{- with include "rekey.annotations" (dict "own" ... "ctx" $) }}{{ . | nindent 2 }}{{ end }}
*/}}
{{- define "rekey.annotations" -}}
{{- $all := merge (deepCopy (.own | default dict)) (.ctx.Values.commonAnnotations | default dict) -}}
{{- with $all -}}
annotations:
  {{- tpl (toYaml .) $.ctx | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "rekey.serviceAccountName" -}}
{{- default (include "rekey.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "rekey.inventoryConfigMap" -}}
{{- default (printf "%s-inventory" (include "rekey.fullname" .)) .Values.inventory.existingConfigMap -}}
{{- end -}}

{{- define "rekey.persistenceClaim" -}}
{{- default (printf "%s-data" (include "rekey.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* A value rendered as a template when it is a string, as YAML otherwise (Bitnami's common.tplvalues.render). */}}
{{- define "rekey.tplvalues" -}}
{{- if typeIs "string" .value -}}
{{- tpl .value .ctx -}}
{{- else -}}
{{- tpl (toYaml .value) .ctx -}}
{{- end -}}
{{- end -}}
