{{/* Settings (environment) and saved files (users directory, prompts, knowledge) as ConfigMaps. */}}
{{- define "mw.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
data:
  {{- include "mw.configData" . | nindent 2 }}
{{- $files := include "mw.files" . }}
{{- if $files }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mw.fullname" . }}-files
  labels:
    {{- include "mw.labels" . | nindent 4 }}
data:
  {{- $files | nindent 2 }}
{{- end }}
{{- $knowledge := include "mw.knowledge" . }}
{{- if $knowledge }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "mw.fullname" . }}-knowledge
  labels:
    {{- include "mw.labels" . | nindent 4 }}
data:
  {{- $knowledge | nindent 2 }}
{{- end }}
{{- end }}

{{/* The Secret the chart makes when no existing one is named; placeholders only in values files. */}}
{{- define "mw.secret" -}}
{{- if include "mw.createSecret" . }}
{{- $data := include "mw.secretData" . | fromYaml }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
type: Opaque
{{- if $data }}
data:
  {{- range $key, $value := $data }}
  {{ $key }}: {{ $value | b64enc | quote }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mw.serviceaccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "mw.serviceAccountName" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end }}
