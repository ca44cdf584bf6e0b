{{/* Everything a service chart renders; its templates/ holds one line that includes this. */}}
{{- define "mw.all" -}}
{{- include "mw.applyDefaults" . }}
{{- $parts := list "mw.serviceaccount" "mw.configmap" "mw.secret" "mw.deployment" "mw.service" "mw.servicemonitor" "mw.ingress" "mw.hpa" "mw.pdb" "mw.networkpolicy" "mw.testPod" }}
{{- range $parts }}
{{- $out := include . $ | trim }}
{{- if $out }}
---
{{ $out }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mw.notes" -}}
{{- include "mw.applyDefaults" . }}
{{- $name := include "mw.fullname" . -}}
{{- $port := include "mw.ownServicePort" . -}}
{{ .Chart.Name }} {{ .Chart.AppVersion }} is installed as {{ $name }} in namespace {{ .Release.Namespace }}.

Reach it from your machine:
  kubectl --namespace {{ .Release.Namespace }} port-forward svc/{{ $name }} {{ $port }}:{{ $port }}
  curl http://127.0.0.1:{{ $port }}/health
  open http://127.0.0.1:{{ $port }}/oas        (the API, Swagger UI)
{{- if .Values.ingress.enabled }}
Or through the Ingress: {{ range .Values.ingress.hosts }}http{{ if $.Values.ingress.tls }}s{{ end }}://{{ .host }}{{ .path | default "/" }} {{ end }}
{{- end }}
{{- if eq .Values.service.type "NodePort" }}
Or on every node's port {{ .Values.service.nodePort | default "(assigned: kubectl get svc)" }}.
{{- end }}

Check it: helm test {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- if not (include "mw.serviceMonitorWanted" .) }}
No ServiceMonitor was rendered: the cluster serves no monitoring.coreos.com/v1 (install
kube-prometheus-stack first, or set serviceMonitor.force=true).
{{- end }}
{{- end }}
