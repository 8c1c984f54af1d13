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

{{/* Refuse value combinations that would install something that cannot work. */}}
{{- define "bees.checks" -}}
{{- if .Values.controller.enabled -}}
{{- fail "controller.enabled: the bees controller is not built yet; leave it false" -}}
{{- end -}}
{{- if .Values.kubeProxyReplacement -}}
{{- fail "kubeProxyReplacement: replacing kube-proxy needs the bees controller, which is not built yet; leave it false" -}}
{{- end -}}
{{- if ne .Values.tenantMapping.mode "single" -}}
{{- fail (printf "tenantMapping.mode %q: only \"single\" is supported until the controller exists" .Values.tenantMapping.mode) -}}
{{- end -}}
{{- if not .Values.podCIDRs -}}
{{- fail "podCIDRs: give at least one pod address range" -}}
{{- end -}}
{{- end }}
