{{/*
The replica count of this release's shard StatefulSet as deployed now, or "" when it is not known
(a first install, `helm template`, a client-side dry run: `lookup` has no cluster to ask then). Kept
alone in this file: the deploy tests put a fixed count in its place to render an upgrade offline.
*/}}
{{- define "shardreg.deployedShardCount" -}}
{{- $sts := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "shardreg.shardName" .) }}
{{- if and $sts $sts.spec }}{{ $sts.spec.replicas | default 1 }}{{ end }}
{{- end }}
