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

{{/*
The analyst's semantic retrieval (ai-systemanalitic.config.EMBEDDINGS_MODEL) keeps its vectors with
pgvector, which the official postgres image lacks: when the bundled PostgreSQL serves an analyst with
embeddings on, refuse that image at render time instead of an analyst that logs an error and
searches by words alone. The analyst creates the extension itself, as the image's POSTGRES_USER,
the superuser pgvector wants. An image of another name is trusted to have it.
*/}}
{{- define "multyworkemon.postgresql.requirePgvector" -}}
{{- $analyst := index .Values "ai-systemanalitic" }}
{{- $embeddings := and $analyst.enabled (dig "database" "enabled" true $analyst) (dig "config" "EMBEDDINGS_MODEL" "" $analyst) }}
{{- $image := .Values.postgresql.image }}
{{- $official := eq "postgres" (regexReplaceAll "^((docker\\.io|index\\.docker\\.io)/)?(library/)?" $image.repository "") }}
{{- if and $embeddings $official }}
{{- $major := regexFind "^[0-9]+" (toString $image.tag) | default "<major>" }}
{{- fail (printf "ai-systemanalitic.config.EMBEDDINGS_MODEL needs pgvector in the bundled PostgreSQL, which the official image %s lacks: set postgresql.image.repository=pgvector/pgvector and postgresql.image.tag=0.8.1-pg%s-bookworm (the major of the current tag: a volume keeps its major; before switching one in use, read the comment on postgresql.image in charts/multyworkemon/values.yaml)" $image.repository $major) }}
{{- end }}
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
