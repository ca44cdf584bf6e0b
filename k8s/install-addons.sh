#!/usr/bin/env bash
# Installs MultyWorkemon's cluster add-ons into the current kubectl context (made for the kind
# cluster of kind-config.yaml), in the order that avoids the known traps:
#   1. kube-prometheus-stack: the monitoring.coreos.com CRDs, Prometheus, Grafana (dashboard sidecar on)
#   2. k8s/observability: Elasticsearch, Kibana, then (hooks) the mw-logs-* index template and the
#      Kibana objects; the Grafana dashboards and PrometheusRule from dashboards/
#   3. Fluent Bit, last, so its first document meets the index template
# Versions: k8s/versions.env. Needs helm 3 and kubectl. Re-running it upgrades in place.
# Everything goes to the namespace monitoring, which the services' NetworkPolicies let scrape them
# (networkPolicy.prometheusNamespaceSelector) and Fluent Bit's Elasticsearch address names.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=k8s/versions.env
source k8s/versions.env
NAMESPACE=monitoring

echo "context: $(kubectl config current-context), namespace: $NAMESPACE"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm repo add fluent https://fluent.github.io/helm-charts --force-update >/dev/null
helm repo update prometheus-community fluent >/dev/null

echo "1/3 kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION"
# The release name is the label ServiceMonitors and PrometheusRules carry (release: kube-prometheus-stack).
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace "$NAMESPACE" --create-namespace \
  --values k8s/values/kube-prometheus-stack.yaml --wait --timeout 15m
kubectl wait --for condition=Established --timeout 120s \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com

echo "2/3 Elasticsearch, Kibana, dashboards and rules (k8s/observability)"
helm upgrade --install multyworkemon-observability k8s/observability \
  --namespace "$NAMESPACE" --wait --timeout 20m

echo "3/3 Fluent Bit $FLUENT_BIT_CHART_VERSION"
helm upgrade --install fluent-bit fluent/fluent-bit \
  --version "$FLUENT_BIT_CHART_VERSION" --namespace "$NAMESPACE" \
  --values k8s/values/fluent-bit.yaml \
  --set-file config.inputs=dashboards/logging/fluent-bit.conf \
  --wait --timeout 10m

cat <<DONE
Add-ons ready. Grafana: http://127.0.0.1:30300 (admin/admin; dashboard "MultyWorkemon health"),
Kibana: http://127.0.0.1:30601, Prometheus: http://127.0.0.1:30900 (kind-config.yaml port mappings).
Next: skaffold dev -p no-addons   (or: helm install multyworkemon charts/multyworkemon ...; docs/kubernetes.md)
DONE
