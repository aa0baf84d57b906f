{{/*
Names, labels and shared values of the sozu-operator chart.
*/}}

{{- define "sozu-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sozu-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sozu-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sozu-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sozu-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sozu-operator.labels" -}}
helm.sh/chart: {{ include "sozu-operator.chart" . }}
{{ include "sozu-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sozu-operator
{{- end }}

{{- define "sozu-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sozu-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sozu-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Directory of the emptyDir both containers share, and Sōzu's command socket in it. */}}
{{- define "sozu-operator.socketDir" -}}/run/sozu{{- end }}
{{- define "sozu-operator.socketPath" -}}/run/sozu/sozu.sock{{- end }}

{{/* Namespaces the operator watches when allNamespaces is false, as a JSON list. */}}
{{- define "sozu-operator.watchNamespaces" -}}
{{- $namespaces := .Values.watchNamespaces | default (list .Release.Namespace) | uniq }}
{{- toJson $namespaces }}
{{- end }}

{{/*
Every port of the pod (Sōzu listeners, operator health and metrics) as a JSON list of
{name, port, servicePort, protocol}. Fails on a duplicate name or port number.
*/}}
{{- define "sozu-operator.listenerPorts" -}}
{{- $ports := list }}
{{- $listeners := .Values.sozu.listeners }}
{{- if $listeners.http.enabled }}
{{- $ports = append $ports (dict "name" "http" "port" $listeners.http.port "servicePort" .Values.service.ports.http) }}
{{- end }}
{{- if $listeners.https.enabled }}
{{- $ports = append $ports (dict "name" "https" "port" $listeners.https.port "servicePort" .Values.service.ports.https) }}
{{- end }}
{{- range $listeners.tcp }}
{{- $ports = append $ports (dict "name" .name "port" .port "servicePort" (default .port .servicePort)) }}
{{- end }}
{{- toJson $ports }}
{{- end }}

{{- define "sozu-operator.checkPorts" -}}
{{- $names := dict "health" true "metrics" true }}
{{- $numbers := dict (toString .Values.health.port) "health" }}
{{- if hasKey $numbers (toString .Values.metrics.port) }}
{{- fail "metrics.port and health.port must differ" }}
{{- end }}
{{- $_ := set $numbers (toString .Values.metrics.port) "metrics" }}
{{- $servicePorts := dict }}
{{- range (include "sozu-operator.listenerPorts" . | fromJsonArray) }}
{{- if hasKey $names .name }}
{{- fail (printf "port name %q is used twice (http, https, health and metrics are reserved)" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- $number := toString (int .port) }}
{{- if hasKey $numbers $number }}
{{- fail (printf "listener %q uses port %s, already taken by %q" .name $number (get $numbers $number)) }}
{{- end }}
{{- $_ := set $numbers $number .name }}
{{- $servicePort := toString (int .servicePort) }}
{{- if hasKey $servicePorts $servicePort }}
{{- fail (printf "listener %q uses service port %s, already taken by %q" .name $servicePort (get $servicePorts $servicePort)) }}
{{- end }}
{{- $_ := set $servicePorts $servicePort .name }}
{{- end }}
{{- end }}

{{/* The lowest listener port, or 65536 without listeners. */}}
{{- define "sozu-operator.lowestListenerPort" -}}
{{- $lowest := 65536 }}
{{- range (include "sozu-operator.listenerPorts" . | fromJsonArray) }}
{{- if lt (int .port) $lowest }}
{{- $lowest = int .port }}
{{- end }}
{{- end }}
{{- $lowest }}
{{- end }}

{{/* Cross-field checks the schema cannot express; called from the Deployment. */}}
{{- define "sozu-operator.validate" -}}
{{- if and .Values.allNamespaces .Values.watchNamespaces }}
{{- fail "allNamespaces and watchNamespaces are exclusive: empty watchNamespaces to watch every namespace" }}
{{- end }}
{{- if and .Values.defaultClass (not .Values.className) }}
{{- fail "defaultClass needs className" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if not (include "sozu-operator.listenerPorts" . | fromJsonArray) }}
{{- fail "Sōzu needs at least one listener (sozu.listeners)" }}
{{- end }}
{{- include "sozu-operator.checkPorts" . }}
{{- end }}
