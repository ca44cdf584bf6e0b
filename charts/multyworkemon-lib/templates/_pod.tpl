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
(multyworkemon_common.settings); DATABASE_URL of the bundled PostgreSQL is projected in beside them.
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
