{{/*
Database migrations as a hook Job (`python -m <module> migrate`). Before the install a chart-made
Secret and ServiceAccount do not exist yet, so the Job gets a hook Secret of its own and the
namespace's default ServiceAccount (no token mounted). With the umbrella's bundled PostgreSQL the
database itself is created by the install, so the first run is post-install there.
*/}}
{{- define "mw.migrationsHookEvents" -}}
{{- if include "mw.bundledPostgresql" . }}post-install,pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}

{{- define "mw.migrationsJob" -}}
{{- if and .Values.migrations.enabled .Values.database.enabled }}
{{- include "mw.requireDatabase" . }}
{{- $hookSecret := and (include "mw.createSecret" .) (not (include "mw.bundledPostgresql" .)) }}
{{- if $hookSecret }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "mw.fullname" . }}-migrate
  labels:
    {{- include "mw.labels" . | nindent 4 }}
    app.kubernetes.io/component: migrations
  annotations:
    helm.sh/hook: {{ include "mw.migrationsHookEvents" . }}
    helm.sh/hook-weight: "-5"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
type: Opaque
data:
  DATABASE_URL: {{ .Values.secrets.values.DATABASE_URL | b64enc | quote }}
---
{{- end }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "mw.fullname" . }}-migrate
  labels:
    {{- include "mw.labels" . | nindent 4 }}
    app.kubernetes.io/component: migrations
  annotations:
    helm.sh/hook: {{ include "mw.migrationsHookEvents" . }}
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  # Retries with back-off cover a database that is still starting.
  backoffLimit: {{ .Values.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ .Values.migrations.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ include "mw.name" . }}-migrate
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/part-of: multyworkemon
        app.kubernetes.io/component: migrations
        multyworkemon.io/database-client: "true"
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "mw.podSecurityContext" . | nindent 8 }}
      containers:
        - name: migrate
          image: {{ include "mw.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          args: ["migrate"]
          env:
            - name: SECRETS_DIR
              value: {{ include "mw.secretsPath" . }}
            - name: LOG_LEVEL
              value: {{ .Values.config.LOG_LEVEL | default "info" | quote }}
          resources:
            {{- toYaml .Values.migrations.resources | nindent 12 }}
          securityContext:
            {{- include "mw.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "mw.commonMounts" . | nindent 12 }}
      volumes:
        {{- include "mw.tmpVolume" . | nindent 8 }}
        {{- if $hookSecret }}
        - name: secrets
          secret:
            secretName: {{ include "mw.fullname" . }}-migrate
            defaultMode: 0440
        {{- else }}
        {{- include "mw.secretsVolume" . | nindent 8 }}
        {{- end }}
{{- end }}
{{- end }}

{{/* `helm test`: the service answers ready through its Service, from a pod the NetworkPolicy admits. */}}
{{- define "mw.testPod" -}}
{{- if .Values.tests.enabled }}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "mw.fullname" . }}-test-ready
  labels:
    app.kubernetes.io/name: {{ include "mw.name" . }}-test
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/part-of: multyworkemon
    app.kubernetes.io/component: helm-test
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "mw.podSecurityContext" . | nindent 4 }}
  containers:
    - name: ready
      # The service's own image: no extra image to pull, and its Python does the HTTP call.
      image: {{ include "mw.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - python
        - -c
        - |
          import sys, urllib.request
          url = sys.argv[1]
          with urllib.request.urlopen(url, timeout=10) as answer:
              print(url, answer.status, answer.read(300).decode())
        - {{ printf "http://%s:%v/health/ready" (include "mw.fullname" .) (.Values.service.port | default .Values.port) | quote }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          cpu: 200m
          memory: 128Mi
      securityContext:
        {{- include "mw.containerSecurityContext" . | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
{{- end }}
{{- end }}
