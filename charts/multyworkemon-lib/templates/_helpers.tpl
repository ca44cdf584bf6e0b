{{/*
Names and labels. Every object of a service carries the same labels; pods are selected by
name + instance only, so a helm-test pod never lands behind the Service.
*/}}

{{- define "mw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just <release> when the release is named after the chart. */}}
{{- define "mw.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "mw.peerFullname" (dict "root" . "name" (default .Chart.Name .Values.nameOverride)) }}
{{- end }}
{{- end }}

{{/* The fullname another MultyWorkemon chart of the same release gets: (dict "root" $ "name" "ai-guesser"). */}}
{{- define "mw.peerFullname" -}}
{{- if contains .name .root.Release.Name }}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The port of each service's Service, the one number its own Service and its callers' URLs share
(GUESSER_URL, ANALYST_URL, SECRETARY_URL): global.servicePorts overrides these defaults, so one
change moves both ends. (A subchart cannot read a sibling's values, hence global.)
*/}}
{{- define "mw.servicePort" -}}
{{- $ports := dict "ai-secretary" 8000 "ai-guesser" 8001 "ai-systemanalitic" 8002 "ai-communicator" 8003 }}
{{- $ports = mustMergeOverwrite $ports ((.root.Values.global).servicePorts | default dict) }}
{{- index $ports .name | required (printf "global.servicePorts has no port for %s" .name) }}
{{- end }}

{{/* http://<peer's fullname>:<peer's Service port>: (dict "root" $ "name" "ai-guesser"). */}}
{{- define "mw.peerURL" -}}
http://{{ include "mw.peerFullname" . }}:{{ include "mw.servicePort" . }}
{{- end }}

{{- define "mw.ownServicePort" -}}
{{- include "mw.servicePort" (dict "root" . "name" .Chart.Name) }}
{{- end }}

{{- define "mw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mw.labels" -}}
helm.sh/chart: {{ include "mw.chart" . }}
{{ include "mw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: multyworkemon
app.kubernetes.io/component: {{ .Values.component }}
{{- end }}

{{/* The umbrella's oauth2-proxy pods, which the communicator admits when they front it. */}}
{{- define "mw.oauth2ProxySelectorLabels" -}}
app.kubernetes.io/name: oauth2-proxy
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mw.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The Secret whose keys become files in /run/secrets/multyworkemon ("" when there is none). */}}
{{- define "mw.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- tpl .Values.secrets.existingSecret . }}
{{- else if (.Values.global).existingSecret }}
{{- tpl .Values.global.existingSecret . }}
{{- else }}
{{- include "mw.fullname" . }}
{{- end }}
{{- end }}

{{/* true when the chart makes the Secret itself (no existing Secret named). */}}
{{- define "mw.createSecret" -}}
{{- if not (or .Values.secrets.existingSecret (.Values.global).existingSecret) }}true{{ end }}
{{- end }}

{{/* The data of the chart-made Secret: its non-empty values. */}}
{{- define "mw.secretData" -}}
{{- $data := dict }}
{{- range $key, $value := .Values.secrets.values }}
{{- if ne (toString $value) "" }}{{ $_ := set $data $key (toString $value) }}{{ end }}
{{- end }}
{{- if include "mw.bundledPostgresql" . }}
{{- /* the bundled PostgreSQL's DATABASE_URL is projected in beside this Secret; two would clash */}}
{{- $_ := unset $data "DATABASE_URL" }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
The Secret whose SERVICE_TOKEN key every service of the release reads ("" when none): the one
named in global.serviceToken.existingSecret, else the one the umbrella chart generates.
*/}}
{{- define "mw.serviceTokenSecret" -}}
{{- $token := (.Values.global).serviceToken | default dict }}
{{- if $token.existingSecret }}
{{- tpl $token.existingSecret . }}
{{- else if $token.generate }}
{{- printf "%s-service-token" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Services refuse to start without SERVICE_TOKEN (unless ALLOW_INSECURE), so say it at render time.
A named Secret of the chart's own is trusted to hold it.
*/}}
{{- define "mw.requireServiceToken" -}}
{{- $insecure := has (lower (toString (.Values.config.ALLOW_INSECURE | default ""))) (list "1" "true" "yes" "on") }}
{{- if not (or (include "mw.serviceTokenSecret" .) (not (include "mw.createSecret" .)) .Values.secrets.values.SERVICE_TOKEN $insecure) }}
{{- fail (printf "%s needs SERVICE_TOKEN, shared by the services of a release: set global.serviceToken.existingSecret (a Secret with a SERVICE_TOKEN key), or install the umbrella chart, which generates one" .Chart.Name) }}
{{- end }}
{{- end }}

{{/*
The umbrella's oauth2-proxy in front of the communicator's web chat (global.oauth2Proxy): its
setting `key` when it is on and this is the communicator, else "". (dict "root" $ "key" "enabled")
*/}}
{{- define "mw.webProxy" -}}
{{- $proxy := (.root.Values.global).oauth2Proxy | default dict }}
{{- if and $proxy.enabled (eq .root.Chart.Name "ai-communicator") }}{{ index $proxy .key }}{{ end }}
{{- end }}

{{/* The bundled PostgreSQL of the umbrella chart, when it is on. */}}
{{- define "mw.bundledPostgresql" -}}
{{- if and .Values.database.enabled ((.Values.global).postgresql).enabled }}true{{ end }}
{{- end }}

{{- define "mw.bundledPostgresqlSecret" -}}
{{- printf "%s-postgresql" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fail early, at render time, when a service that needs PostgreSQL is given no database. */}}
{{- define "mw.requireDatabase" -}}
{{- if and .Values.database.enabled (not (include "mw.bundledPostgresql" .)) (include "mw.createSecret" .) (not .Values.secrets.values.DATABASE_URL) }}
{{- fail (printf "%s needs PostgreSQL: set secrets.values.DATABASE_URL, secrets.existingSecret (a Secret with a DATABASE_URL key) or global.existingSecret, or install the umbrella chart with global.postgresql.enabled=true" .Chart.Name) }}
{{- end }}
{{- end }}

{{/* Non-empty settings rendered through tpl, so values may name the release's other services. */}}
{{- define "mw.configData" -}}
{{- $data := dict }}
{{- range $key, $value := .Values.config }}
{{- $text := tpl (toString $value) $ }}
{{- if ne $text "" }}{{ $_ := set $data $key $text }}{{ end }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
Saved files and knowledge documents (file name -> content): the values' own, plus with
global.samples the chart's samples/ folder (links to the repository's sample users directory and
knowledge base, what `make run` loads). A file in values wins over a sample of the same name.
*/}}
{{- define "mw.files" -}}
{{- include "mw.withSamples" (dict "root" . "given" .Values.files "glob" "samples/files/*") }}
{{- end }}

{{- define "mw.knowledge" -}}
{{- include "mw.withSamples" (dict "root" . "given" .Values.knowledge "glob" "samples/knowledge/*.md") }}
{{- end }}

{{- define "mw.withSamples" -}}
{{- $out := dict }}
{{- if (.root.Values.global).samples }}
{{- range $path, $_ := .root.Files.Glob .glob }}
{{- $_ := set $out (base $path) ($.root.Files.Get $path) }}
{{- end }}
{{- end }}
{{- $out = mustMergeOverwrite $out (deepCopy (.given | default dict)) }}
{{- if $out }}{{ toYaml $out }}{{ end }}
{{- end }}

{{- define "mw.filesPath" -}}/etc/multyworkemon/files{{- end }}
{{- define "mw.knowledgePath" -}}/etc/multyworkemon/knowledge{{- end }}
{{- define "mw.secretsPath" -}}/run/secrets/multyworkemon{{- end }}
