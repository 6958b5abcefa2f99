{{- define "rekey.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rekey.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rekey.labels" -}}
{{ include "rekey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rekey.serviceAccountName" -}}
{{- default (include "rekey.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "rekey.inventoryConfigMap" -}}
{{- default (printf "%s-inventory" (include "rekey.fullname" .)) .Values.inventory.existingConfigMap -}}
{{- end -}}
