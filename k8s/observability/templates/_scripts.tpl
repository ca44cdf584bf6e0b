{{/* Shell run by the loader Jobs (curl image). Each waits, then sends the file, and fails loudly. */}}

{{- define "obs.script.wait" -}}
# wait_for URL NAME: retry until URL answers 2xx or WAIT_SECONDS pass.
wait_for() {
  deadline=$(( $(date +%s) + WAIT_SECONDS ))
  until curl -fsS -o /dev/null --max-time 10 "$1"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$2 did not answer at $1 within ${WAIT_SECONDS}s" >&2
      exit 1
    fi
    echo "waiting for $2"
    sleep 5
  done
}
{{- end }}

{{- define "obs.script.indexTemplate" -}}
set -eu
{{ include "obs.script.wait" . }}
wait_for "$ELASTICSEARCH_URL/_cluster/health?wait_for_status=yellow&timeout=5s" Elasticsearch
curl -fsS --max-time 30 -X PUT "$ELASTICSEARCH_URL/_index_template/mw-logs" \
  -H 'Content-Type: application/json' --data-binary "@$DATA_FILE"
echo
echo "index template mw-logs loaded"
{{- end }}

{{- define "obs.script.kibanaObjects" -}}
set -eu
{{ include "obs.script.wait" . }}
wait_for "$KIBANA_URL/api/status" Kibana
answer=$(curl -fsS --max-time 60 -X POST "$KIBANA_URL/api/saved_objects/_import?overwrite=true" \
  -H 'kbn-xsrf: true' --form "file=@$DATA_FILE")
echo "$answer"
# Kibana answers 200 even when objects fail; only "success":true means all were imported.
case "$(printf '%s' "$answer" | tr -d ' \n')" in
  *'"success":true'*) echo "Kibana objects imported" ;;
  *) echo "Kibana refused some objects" >&2; exit 1 ;;
esac
{{- end }}
