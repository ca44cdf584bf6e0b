{{/*
Pieces the pods of a service share (the Deployment and the helm test):
security contexts, the secrets volume, /tmp.
*/}}

{{- define "mw.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "mw.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
Secret settings arrive as files in /run/secrets/multyworkemon, where the services read them
(multyworkemon_common.settings); DATABASE_URL of the bundled PostgreSQL and the release's
SERVICE_TOKEN are projected in beside them.
*/}}
{{- define "mw.secretsVolume" -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "mw.secretName" . }}
      {{- if include "mw.bundledPostgresql" . }}
      - secret:
          name: {{ include "mw.bundledPostgresqlSecret" . }}
          items:
            - key: DATABASE_URL
              path: DATABASE_URL
      {{- end }}
      {{- with include "mw.serviceTokenSecret" . }}
      # Last: the kubelet writes the sources in order, so this SERVICE_TOKEN wins over one in the
      # Secret above, and the four services share it.
      - secret:
          name: {{ . }}
          items:
            - key: SERVICE_TOKEN
              path: SERVICE_TOKEN
      {{- end }}
{{- end }}

{{- define "mw.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "mw.commonMounts" -}}
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: {{ include "mw.secretsPath" . }}
  readOnly: true
{{- end }}
