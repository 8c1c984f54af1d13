{{/* Labels every object carries. */}}
{{- define "bees.labels" -}}
app.kubernetes.io/part-of: midonet-bees
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "bees.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The store URL the agents use: the external one, or the in-chart ZooKeeper through its Service's env vars
     (kubelet sets BEES_ZOOKEEPER_SERVICE_HOST/PORT for Services that exist before the pod; no DNS needed, since
     cluster DNS runs on the pod network the agent provides). */}}
{{- define "bees.storeUrl" -}}
{{- if .Values.store.url -}}
{{ .Values.store.url }}
{{- else -}}
zk://$(BEES_ZOOKEEPER_SERVICE_HOST):$(BEES_ZOOKEEPER_SERVICE_PORT)/bees
{{- end -}}
{{- end }}

{{/* Whether the agents serve /metrics on TCP: asked for, or needed by the ServiceMonitor. */}}
{{- define "bees.metricsTcp" -}}
{{- if or .Values.metrics.enabled .Values.metrics.serviceMonitor.enabled -}}true{{- end -}}
{{- end }}

{{/* The Secret holding the metrics bearer token. */}}
{{- define "bees.metricsTokenSecret" -}}
{{ .Values.metrics.token.existingSecret | default "bees-agent-metrics-token" }}
{{- end }}

{{/* Refuse value combinations that would install something that cannot work. */}}
{{- define "bees.checks" -}}
{{- if and .Values.kubeProxyReplacement (not .Values.controller.enabled) -}}
{{- fail "kubeProxyReplacement: replacing kube-proxy needs the bees controller (controller.enabled)" -}}
{{- end -}}
{{- if and .Values.kubeProxyReplacement (not .Values.store.url) -}}
{{- fail "kubeProxyReplacement: the in-chart ZooKeeper is reached through a ClusterIP, which kube-proxy serves; give store.url" -}}
{{- end -}}
{{- if not (has .Values.tenantMapping.mode (list "flat" "namespace")) -}}
{{- fail (printf "tenantMapping.mode %q: give \"flat\" or \"namespace\"" .Values.tenantMapping.mode) -}}
{{- end -}}
{{- if and (eq .Values.tenantMapping.mode "namespace") (not .Values.controller.enabled) -}}
{{- fail "tenantMapping.mode namespace: the bees controller makes each namespace's network (controller.enabled)" -}}
{{- end -}}
{{- if not .Values.podCIDRs -}}
{{- fail "podCIDRs: give at least one pod address range" -}}
{{- end -}}
{{- end }}
