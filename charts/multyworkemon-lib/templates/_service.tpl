{{- define "mw.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  selector:
    {{- include "mw.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ include "mw.ownServicePort" . }}
      targetPort: http
      protocol: TCP
      {{- if and (eq .Values.service.type "NodePort") .Values.service.nodePort }}
      nodePort: {{ .Values.service.nodePort }}
      {{- end }}
{{- end }}

{{/*
Rendered when the cluster serves monitoring.coreos.com/v1 (helm asks it), or when forced on:
without the CRDs a ServiceMonitor fails the install with "no matches for kind ServiceMonitor".
*/}}
{{- define "mw.serviceMonitorWanted" -}}
{{- if and .Values.serviceMonitor.enabled (or .Values.serviceMonitor.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}true{{ end }}
{{- end }}

{{- define "mw.servicemonitor" -}}
{{- if include "mw.serviceMonitorWanted" . }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
    # kube-prometheus-stack's Prometheus only picks up ServiceMonitors with its release label.
    {{- toYaml .Values.serviceMonitor.labels | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- include "mw.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- end }}

{{- define "mw.ingress" -}}
{{- if and .Values.ingress.enabled (include "mw.webProxy" (dict "root" . "key" "enabled")) }}
{{- fail "ai-communicator.ingress cannot be on behind global.oauth2Proxy: the web chat admits only the proxy; enable global.oauth2Proxy.ingress instead" }}
{{- end }}
{{- if .Values.ingress.enabled }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
  {{- with .Values.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with .Values.ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range .Values.ingress.hosts }}
    - host: {{ .host | quote }}
      http:
        paths:
          - path: {{ .path | default "/" }}
            pathType: Prefix
            backend:
              service:
                name: {{ include "mw.fullname" $ }}
                port:
                  name: http
    {{- end }}
{{- end }}
{{- end }}
