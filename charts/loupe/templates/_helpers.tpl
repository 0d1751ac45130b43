{{/* Names, labels and the agent's command line, shared by the templates. */}}

{{- define "loupe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release name, prefixed with the chart's unless it already contains it. */}}
{{- define "loupe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "loupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "loupe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "loupe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "loupe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "loupe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding OTEL_EXPORTER_OTLP_HEADERS; empty when there are no headers. */}}
{{- define "loupe.headersSecretName" -}}
{{- $h := .Values.otlp.headers -}}
{{- if and $h.existingSecret $h.value -}}
{{- fail "otlp.headers: set existingSecret (a Secret you manage) or value (the chart creates the Secret), not both" -}}
{{- end -}}
{{- if $h.existingSecret -}}
{{- $h.existingSecret -}}
{{- else if $h.value -}}
{{- printf "%s-otlp-headers" (include "loupe.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The agent's flags. Numbers go through int: Helm reads values as float64, which would print
1e+06 for a million.
*/}}
{{- define "loupe.args" -}}
- {{ printf "--metrics-listen=%s:%d" .Values.metrics.listenAddress (.Values.metrics.port | int) | quote }}
- {{ printf "--log-level=%s" .Values.logLevel | quote }}
- {{ ternary "--console" "--no-console" .Values.console | quote }}
{{- if not (kindIs "invalid" .Values.resourceInterval) }}
- {{ printf "--resource-interval=%d" (.Values.resourceInterval | int) | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.payload.bytes) }}
- {{ printf "--payload-bytes=%d" (.Values.payload.bytes | int) | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.payload.bytesFramed) }}
- {{ printf "--payload-bytes-framed=%d" (.Values.payload.bytesFramed | int) | quote }}
{{- end }}
{{- with .Values.filters.ports }}
{{- $ports := list }}
{{- range . }}{{ $ports = append $ports (int .) }}{{ end }}
- {{ printf "--port=%s" (join "," $ports) | quote }}
{{- end }}
{{- with .Values.filters.pids }}
{{- $pids := list }}
{{- range . }}{{ $pids = append $pids (int .) }}{{ end }}
- {{ printf "--pid=%s" (join "," $pids) | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* OTEL_RESOURCE_ATTRIBUTES from a map, in key order: k=v,k=v. */}}
{{- define "loupe.resourceAttributes" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.resourceAttributes -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
