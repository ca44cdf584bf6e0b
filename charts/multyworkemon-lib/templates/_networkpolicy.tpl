{{/*
Who may open the service's http port: the MultyWorkemon services named in
networkPolicy.allowFrom (any release of the product in the namespace), this release's helm test
pods, Prometheus from its namespace, the ingress controller when the Ingress is on, and extraFrom.
Behind the umbrella's oauth2-proxy the communicator trusts an identity header from the pod
network, so then only the proxy pods, helm test and Prometheus may connect.
*/}}
{{- define "mw.networkpolicy" -}}
{{- if .Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "mw.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/instance: {{ .Release.Name }}
              app.kubernetes.io/component: helm-test
        {{- if include "mw.webProxy" (dict "root" . "key" "enabled") }}
        - podSelector:
            matchLabels:
              {{- include "mw.oauth2ProxySelectorLabels" . | nindent 14 }}
        {{- else }}
        {{- range .Values.networkPolicy.allowFrom }}
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: {{ . }}
              app.kubernetes.io/part-of: multyworkemon
        {{- end }}
        {{- if .Values.ingress.enabled }}
        - namespaceSelector:
            {{- toYaml .Values.networkPolicy.ingressControllerNamespaceSelector | nindent 12 }}
        {{- end }}
        {{- with .Values.networkPolicy.extraFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- end }}
      ports:
        - port: http
          protocol: TCP
    {{- with .Values.networkPolicy.prometheusNamespaceSelector }}
    - from:
        - namespaceSelector:
            {{- toYaml . | nindent 12 }}
      ports:
        - port: http
          protocol: TCP
    {{- end }}
{{- end }}
{{- end }}
