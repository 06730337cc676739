{{/* Chart name, truncated to what a DNS label allows. */}}
{{- define "shardreg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. Kept short: the shard pods are "<fullname>-shard-<i>" and the
headless Service "<fullname>-shard-headless", both DNS labels.
*/}}
{{- define "shardreg.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shardreg.gatewayName" -}}{{ include "shardreg.fullname" . }}-gateway{{- end }}
{{- define "shardreg.shardName" -}}{{ include "shardreg.fullname" . }}-shard{{- end }}
{{- define "shardreg.shardHeadlessName" -}}{{ include "shardreg.fullname" . }}-shard-headless{{- end }}

{{- define "shardreg.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "shardreg.labels" -}}
helm.sh/chart: {{ include "shardreg.chart" . }}
app.kubernetes.io/name: {{ include "shardreg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shardreg
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "shardreg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shardreg.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "shardreg.componentLabels" -}}
{{ include "shardreg.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "shardreg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shardreg.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shardreg.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "shardreg.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- include "shardreg.fullname" . }}-auth
{{- end }}
{{- end }}

{{/* Whether any client authentication is configured. */}}
{{- define "shardreg.authEnabled" -}}
{{- if or .Values.auth.htpasswd.enabled .Values.auth.bearer.enabled }}true{{ end }}
{{- end }}

{{/* Paths inside the pods. */}}
{{- define "shardreg.configPath" -}}/etc/shardreg/config.json{{- end }}
{{- define "shardreg.secretsDir" -}}/etc/shardreg/secrets{{- end }}
{{- define "shardreg.curveDir" -}}/etc/shardreg/curve{{- end }}

{{/* The Secret holding the CURVE keys of the gateway → shard wire. */}}
{{- define "shardreg.curveSecretName" -}}
{{- if .Values.curve.existingSecret }}
{{- .Values.curve.existingSecret }}
{{- else }}
{{- include "shardreg.fullname" . }}-curve
{{- end }}
{{- end }}

{{/*
The registry configuration as a JSON document: zot's format plus the `cluster` section. Gateways
reach shard i at its stable StatefulSet DNS name; shards bind every interface on the same port.
Call with (dict "ctx" $ "shards" N): "shardreg.config" renders it for shard.count, and the shard pods'
checksum renders it for no shard at all, so that a change of shard.count never restarts a shard.
*/}}
{{- define "shardreg.configFor" -}}
{{- $ctx := .ctx }}
{{- $count := int .shards }}
{{- $c := $ctx.Values.config }}
{{- $storage := dict
    "rootDirectory" $c.storage.rootDirectory
    "commit" $c.storage.commit
    "gc" $c.storage.gc
    "gcDelay" $c.storage.gcDelay
    "gcInterval" $c.storage.gcInterval
    "allowDelete" $c.storage.allowDelete
    "uploadExpiry" $c.storage.uploadExpiry }}
{{- $http := dict "address" "0.0.0.0" "port" (int $ctx.Values.gateway.port) "realm" $c.http.realm }}
{{- with $c.http.externalUrl }}{{ $_ := set $http "externalUrl" . }}{{ end }}
{{- with $c.http.accessControl }}{{ $_ := set $http "accessControl" . }}{{ end }}
{{- with $c.http.ratelimit }}{{ $_ := set $http "ratelimit" . }}{{ end }}
{{- if include "shardreg.authEnabled" $ctx }}
{{- $auth := dict "sessionKeysFile" (printf "%s/session-keys.json" (include "shardreg.secretsDir" $ctx)) }}
{{- if $ctx.Values.auth.htpasswd.enabled }}
{{- $_ := set $auth "htpasswd" (dict "path" (printf "%s/htpasswd" (include "shardreg.secretsDir" $ctx))) }}
{{- end }}
{{- if $ctx.Values.auth.bearer.enabled }}
{{- $_ := set $auth "bearer" (dict "realm" $ctx.Values.auth.bearer.realm "service" $ctx.Values.auth.bearer.service "cert" (printf "%s/bearer.crt" (include "shardreg.secretsDir" $ctx))) }}
{{- end }}
{{- if $ctx.Values.auth.apikey }}{{ $_ := set $auth "apikey" true }}{{ end }}
{{- $_ := set $http "auth" $auth }}
{{- end }}
{{- $endpoints := list }}
{{- range $i := until $count }}
{{- $endpoints = append $endpoints (printf "tcp://%s-%d.%s:%d" (include "shardreg.shardName" $ctx) $i (include "shardreg.shardHeadlessName" $ctx) (int $ctx.Values.shard.zmqPort)) }}
{{- end }}
{{- $cluster := dict
    "shards" $count
    "endpoints" $endpoints
    "bind" "tcp://0.0.0.0:{port}"
    "gatewayWorkers" (int $ctx.Values.gateway.workers)
    "hashSeed" (int $c.hashSeed)
    "sharedStorage" false
    "requestTimeout" $c.requestTimeout
    "shardMetricsPort" (int $ctx.Values.shard.metricsPort) }}
{{- if $ctx.Values.curve.insecure }}
{{- $_ := set $cluster "insecure" true }}
{{- else }}
{{- $_ := set $cluster "shardKey" (printf "%s/shard-{index}.key_secret" (include "shardreg.curveDir" $ctx)) }}
{{- $_ := set $cluster "gatewayKey" (printf "%s/gateway.key_secret" (include "shardreg.curveDir" $ctx)) }}
{{- with $ctx.Values.curve.authorizedGatewayKeys }}
{{- $paths := list }}
{{- range . }}{{ $paths = append $paths (printf "%s/%s" (include "shardreg.curveDir" $ctx) .) }}{{ end }}
{{- $_ := set $cluster "authorizedGatewayKeys" $paths }}
{{- end }}
{{- end }}
{{- $config := dict
    "distSpecVersion" $c.distSpecVersion
    "storage" $storage
    "http" $http
    "log" (dict "level" $c.log.level)
    "extensions" ($c.extensions | default dict)
    "cluster" $cluster }}
{{- toPrettyJson $config }}
{{- end }}

{{- define "shardreg.config" -}}
{{- include "shardreg.configFor" (dict "ctx" . "shards" (int .Values.shard.count)) }}
{{- end }}

{{/* Volumes and mounts every pod has: config, secrets, a writable /tmp. */}}
{{- define "shardreg.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "shardreg.fullname" . }}-config
{{- if include "shardreg.authEnabled" . }}
- name: secrets
  secret:
    secretName: {{ include "shardreg.secretName" . }}
    defaultMode: 0440
{{- end }}
{{- if not .Values.curve.insecure }}
- name: curve
  secret:
    secretName: {{ include "shardreg.curveSecretName" . }}
    defaultMode: 0440
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "shardreg.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/shardreg/config.json
  subPath: config.json
  readOnly: true
{{- if include "shardreg.authEnabled" . }}
- name: secrets
  mountPath: {{ include "shardreg.secretsDir" . }}
  readOnly: true
{{- end }}
{{- if not .Values.curve.insecure }}
- name: curve
  mountPath: {{ include "shardreg.curveDir" . }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Annotations that roll the pods when the config or the secret changes. The secret's checksum covers
the values it is made from: generated session keys are kept across upgrades, so they never change it.
*/}}
{{- define "shardreg.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if and (include "shardreg.authEnabled" .) (not .Values.auth.existingSecret) }}
checksum/secret: {{ toJson .Values.auth | sha256sum }}
{{- end }}
{{- end }}

{{/*
The shard pods' checksums: the same as above except that the config is hashed without its shard count
and endpoints. Shards learn the cluster's shape from the shard map, not from the config; a pod template
that changed with shard.count would restart every existing shard on a grow.
*/}}
{{- define "shardreg.shardChecksums" -}}
checksum/config: {{ include "shardreg.configFor" (dict "ctx" . "shards" 0) | sha256sum }}
{{- if and (include "shardreg.authEnabled" .) (not .Values.auth.existingSecret) }}
checksum/secret: {{ toJson .Values.auth | sha256sum }}
{{- end }}
{{- end }}

{{/* A soft anti-affinity spreading one component's pods across nodes. */}}
{{- define "shardreg.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "shardreg.selectorLabels" . | nindent 12 }}
{{- end }}
