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
        - {{ printf "http://%s:%v/health/ready" (include "mw.fullname" .) (include "mw.ownServicePort" .) | quote }}
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
