{{/*
The values every MultyWorkemon service chart shares, written once. A service chart's values.yaml
holds only what differs (image, port, component, its settings and files, who may call it); helm
merges that with the user's values, and "mw.applyDefaults" lays the result over these defaults
(mustMergeOverwrite: a chart or user value, even false or "", wins; lists are replaced whole).
Helm does not merge a library chart's values.yaml into its parent, hence a template. Plain YAML
only below: tests/k8s reads it too. The schema is charts/multyworkemon-lib/service-values.schema.json.
*/}}
{{- define "mw.defaults" -}}
# Release-wide settings, normally set once in the umbrella chart (charts/multyworkemon).
global:
  # SERVICE_TOKEN, which the four services share (X-Service-Token), is read from a Secret, never
  # from values: existingSecret names yours (key SERVICE_TOKEN); generate is set by the umbrella
  # chart, which makes <release>-service-token once and keeps it. A service chart installed alone
  # needs existingSecret (or secrets.values.SERVICE_TOKEN / secrets.existingSecret).
  serviceToken:
    existingSecret: ""
    generate: false
  # A Secret holding every secret setting of every service (DATABASE_URL, SERVICE_TOKEN,
  # LLM_API_KEY, IMAP_PASSWORD, ...); used when a chart names no Secret of its own.
  existingSecret: ""
  postgresql:
    # The umbrella chart's bundled PostgreSQL; its DATABASE_URL is given to the services.
    enabled: false
  # The Service port of a service (chart name -> port), where its callers' URLs point too; unset
  # ones keep 8000 (ai-secretary), 8001 (ai-guesser), 8002 (ai-systemanalitic), 8003 (ai-communicator).
  servicePorts: {}
  # Load the repository's sample users directory and knowledge base (what `make run` loads); for
  # kind and trials.
  samples: false

nameOverride: ""
fullnameOverride: ""

image:
  # repository: each chart names its own.
  # Defaults to the chart's appVersion.
  tag: ""
  pullPolicy: IfNotPresent
imagePullSecrets: []

replicaCount: 2
strategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: 0
    maxSurge: 1

# Settings passed as environment variables (ConfigMap). Values go through `tpl`; empty ones are
# left out so the service's own default applies.
config:
  LOG_LEVEL: info

# Saved files (file name -> content), mounted read-only in /etc/multyworkemon/files.
files: {}
# Settings that point at one of `files` (setting -> file name); set only when the file is given.
fileSettings: {}
# Markdown documents (file name -> content) mounted in /etc/multyworkemon/knowledge (KNOWLEDGE_DIR).
knowledge: {}

secrets:
  # Name of an existing Secret with this service's secret settings as keys (DATABASE_URL,
  # SERVICE_TOKEN, ...). They are mounted as files in /run/secrets/multyworkemon.
  existingSecret: ""
  # Used when no existing Secret is named: the chart makes one from the non-empty entries.
  # Placeholders only, never real credentials in a values file.
  values: {}

database:
  # The service uses PostgreSQL (needs DATABASE_URL). The secretary's and the analyst's pods apply
  # pending migrations on start (MIGRATE_ON_START, the default) under an advisory lock and report
  # ready only once the schema is current: no hook Job, so `helm install --wait`, Argo CD and Flux
  # all see a plain rollout, and an upgrade's new pods migrate while the old ones serve.
  enabled: true

serviceAccount:
  create: true
  name: ""
  annotations: {}

podAnnotations: {}
podLabels: {}

podSecurityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault

containerSecurityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault

# The only writable place (the services write nothing outside /tmp).
tmpSizeLimit: 64Mi

resources:
  requests:
    cpu: 50m
    memory: 128Mi
  limits:
    cpu: "1"
    memory: 384Mi

probes:
  # Startup takes under 2 s; the budget covers a slow node pulling and starting.
  startup:
    periodSeconds: 2
    timeoutSeconds: 2
    failureThreshold: 30
  liveness:
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readiness:
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 2

# Seconds between the pod leaving the Service and SIGTERM; the service then drains in-flight
# requests (SHUTDOWN_TIMEOUT, 20 s), all within terminationGracePeriodSeconds.
preStopSleepSeconds: 5
terminationGracePeriodSeconds: 40

service:
  # Its port is global.servicePorts.<chart>.
  type: ClusterIP
  # With type NodePort: the fixed node port (kind maps it to the host).
  nodePort: null
  annotations: {}

ingress:
  enabled: false
  className: ""
  annotations: {}
  hosts:
    - host: multyworkemon.example.com
      path: /
  tls: []

serviceMonitor:
  # Rendered when the cluster serves monitoring.coreos.com/v1 (or with force).
  enabled: true
  force: false
  # kube-prometheus-stack's Prometheus selects ServiceMonitors by its release label.
  labels:
    release: kube-prometheus-stack
  interval: 30s
  scrapeTimeout: 10s

autoscaling:
  enabled: true
  minReplicas: 2
  maxReplicas: 6
  targetCPUUtilizationPercentage: 75

podDisruptionBudget:
  # Rendered only when 2+ replicas can run.
  enabled: true
  maxUnavailable: 1

networkPolicy:
  enabled: true
  # MultyWorkemon services that call this one (their chart names).
  allowFrom: []
  # Prometheus scrapes the http port from this namespace (kube-prometheus-stack's).
  prometheusNamespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: monitoring
  # With the Ingress on: where the ingress controller runs.
  ingressControllerNamespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: ingress-nginx
  # Further NetworkPolicyPeer entries, e.g. [{ipBlock: {cidr: 0.0.0.0/0}}] for a NodePort.
  extraFrom: []

extraEnv: []
nodeSelector: {}
tolerations: []
affinity: {}
# Empty: with 2+ possible replicas, a spread over nodes and zones (mw.topologySpread).
topologySpreadConstraints: []

tests:
  # `helm test`: a pod that asks the Service for /health/ready.
  enabled: true
{{- end }}

{{/*
.Values becomes the defaults overlaid with the chart's and the user's values, in place, so every
template reads plain .Values. Idempotent: "mw.all" and "mw.notes" both call it.
*/}}
{{- define "mw.applyDefaults" -}}
{{- $merged := mustMergeOverwrite (include "mw.defaults" . | fromYaml) .Values }}
{{- range $key, $value := $merged }}
{{- $_ := set $.Values $key $value }}
{{- end }}
{{- end }}
