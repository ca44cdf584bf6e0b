{{- define "mw.deployment" -}}
{{- include "mw.requireDatabase" . }}
{{- include "mw.requireServiceToken" . }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mw.fullname" . }}
  labels:
    {{- include "mw.labels" . | nindent 4 }}
{{- $files := include "mw.files" . | fromYaml }}
{{- $knowledge := include "mw.knowledge" . }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml .Values.strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "mw.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      annotations:
        # A changed setting, prompt or secret rolls the pods.
        checksum/config: {{ include "mw.configmap" . | sha256sum }}
        checksum/secret: {{ include "mw.secret" . | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "mw.labels" . | nindent 8 }}
        {{- if .Values.database.enabled }}
        multyworkemon.io/database-client: "true"
        {{- end }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "mw.serviceAccountName" . }}
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "mw.podSecurityContext" . | nindent 8 }}
      # preStop sleep + the service's own drain (SHUTDOWN_TIMEOUT) must fit in here.
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "mw.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .Values.port }}
              protocol: TCP
          env:
            - name: PORT
              value: {{ .Values.port | quote }}
            - name: SECRETS_DIR
              value: {{ include "mw.secretsPath" . }}
            {{- range $setting, $file := .Values.fileSettings }}
            {{- if hasKey $files $file }}
            - name: {{ $setting }}
              value: {{ printf "%s/%s" (include "mw.filesPath" $) $file | quote }}
            {{- end }}
            {{- end }}
            {{- if $knowledge }}
            - name: KNOWLEDGE_DIR
              value: {{ include "mw.knowledgePath" . }}
            {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "mw.fullname" . }}
          startupProbe:
            httpGet:
              path: /health/live
              port: http
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /health/live
              port: http
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /health/ready
              port: http
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
          lifecycle:
            preStop:
              # Let the endpoints controller take the pod out of the Service before SIGTERM.
              exec:
                command: ["sleep", {{ .Values.preStopSleepSeconds | quote }}]
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- include "mw.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "mw.commonMounts" . | nindent 12 }}
            {{- if $files }}
            - name: files
              mountPath: {{ include "mw.filesPath" . }}
              readOnly: true
            {{- end }}
            {{- if $knowledge }}
            - name: knowledge
              mountPath: {{ include "mw.knowledgePath" . }}
              readOnly: true
            {{- end }}
      volumes:
        {{- include "mw.tmpVolume" . | nindent 8 }}
        {{- include "mw.secretsVolume" . | nindent 8 }}
        {{- if $files }}
        - name: files
          configMap:
            name: {{ include "mw.fullname" . }}-files
        {{- end }}
        {{- if $knowledge }}
        - name: knowledge
          configMap:
            name: {{ include "mw.fullname" . }}-knowledge
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with include "mw.topologySpread" . }}
      topologySpreadConstraints:
        {{- . | trim | nindent 8 }}
      {{- end }}
{{- end }}
