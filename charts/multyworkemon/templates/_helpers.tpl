{{- define "multyworkemon.postgresql.fullname" -}}
{{- printf "%s-postgresql" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multyworkemon.postgresql.selectorLabels" -}}
app.kubernetes.io/name: postgresql
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the umbrella's own objects: (dict "root" $ "name" "postgresql" "component" "database" "version" "17"). */}}
{{- define "multyworkemon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .version | default .root.Chart.AppVersion | toString | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: multyworkemon
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "multyworkemon.postgresql.labels" -}}
{{- include "multyworkemon.labels" (dict "root" . "name" "postgresql" "component" "database" "version" .Values.postgresql.image.tag) }}
{{- end }}

{{/*
The SERVICE_TOKEN data (base64) of the generated Secret: the one `existing` (the Secret as the
cluster has it, from lookup) holds, else a new random one. Apart from lookup so tests can feed it.
*/}}
{{- define "multyworkemon.serviceTokenData" -}}
{{- $data := (.existing).data | default dict }}
{{- if $data.SERVICE_TOKEN }}
{{- $data.SERVICE_TOKEN }}
{{- else }}
{{- randAlphaNum 48 | b64enc }}
{{- end }}
{{- end }}

{{/* The password: given, else the one already in the cluster's Secret, else a new random one. */}}
{{- define "multyworkemon.postgresql.password" -}}
{{- if .Values.postgresql.auth.password }}
{{- .Values.postgresql.auth.password }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "multyworkemon.postgresql.fullname" .) }}
{{- if and $existing (index ($existing.data | default dict) "password") }}
{{- index $existing.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}
