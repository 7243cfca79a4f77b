{{/*
Names, labels and the pieces every component shares. Templates that render one resource per
component call these with (dict "root" $ "component" "<key>"), <key> one of the values blocks
modelServer, api, frontend.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "fashion-clip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
<release>-<chart>, or the release name alone when it already contains the chart name. Kept short
enough that "-model-server" and "-predictor" still fit a 63-character DNS label.
*/}}
{{- define "fashion-clip.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 36 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 36 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 36 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "fashion-clip.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The component keys, in rendering order. */}}
{{- define "fashion-clip.components" -}}
modelServer api frontend
{{- end }}

{{/* values key -> name suffix and app.kubernetes.io/component label. */}}
{{- define "fashion-clip.componentSlug" -}}
{{- get (dict "modelServer" "model-server" "api" "api" "frontend" "frontend") . }}
{{- end }}

{{/* Full name of a component's resources, e.g. fashion-clip-api. */}}
{{- define "fashion-clip.componentName" -}}
{{- printf "%s-%s" (include "fashion-clip.fullname" .root) (include "fashion-clip.componentSlug" .component) }}
{{- end }}

{{- define "fashion-clip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fashion-clip.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .slug | default (include "fashion-clip.componentSlug" .component) }}
{{- end }}

{{- define "fashion-clip.labels" -}}
helm.sh/chart: {{ include "fashion-clip.chart" .root }}
{{ include "fashion-clip.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "fashion-clip.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* The component's values block. */}}
{{- define "fashion-clip.values" -}}
{{- toYaml (get .root.Values .component) }}
{{- end }}

{{/*
Facts of each image that are not knobs (docs/contracts.md): the container's named ports and the
paths it writes to, which become emptyDir volumes under a read-only root filesystem.
*/}}
{{- define "fashion-clip.facts" -}}
{{- if eq .component "modelServer" }}
httpPort: 8080
metricsPort: 8082
managementPort: 8081
writable:
  - {name: logs, mountPath: /home/model-server/logs, sizeLimit: 512Mi}
  # TorchServe unpacks the .mar here: the model's weights, ~600 MB for ViT-B/32.
  - {name: tmp, mountPath: /tmp, sizeLimit: 2Gi}
{{- else if eq .component "api" }}
httpPort: 8000
writable:
  - {name: tmp, mountPath: /tmp, sizeLimit: 256Mi}
{{- else }}
httpPort: 8501
writable:
  - {name: tmp, mountPath: /tmp, sizeLimit: 256Mi}
  - {name: streamlit, mountPath: /home/app/.streamlit, sizeLimit: 16Mi}
{{- end }}
{{- end }}

{{/*
Image reference: [global.imageRegistry/]repository, then @digest when set, else :tag (tag, else
global.imageTag, else the chart's appVersion). scripts/cloudrun.py builds the same string.
*/}}
{{- define "fashion-clip.image" -}}
{{- $image := (get .root.Values .component).image }}
{{- $repository := $image.repository }}
{{- with .root.Values.global.imageRegistry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (toString (coalesce $image.tag .root.Values.global.imageTag .root.Chart.AppVersion)) }}
{{- end }}
{{- end }}

{{- define "fashion-clip.serviceAccountName" -}}
{{- $sa := (get .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "fashion-clip.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* scaling.cpu in millicores: 1 -> 1000, 0.5 -> 500, "250m" -> 250. */}}
{{- define "fashion-clip.cpuMillis" -}}
{{- $cpu := toString (get .root.Values .component).scaling.cpu }}
{{- if hasSuffix "m" $cpu }}
{{- trimSuffix "m" $cpu | atoi }}
{{- else }}
{{- mulf (float64 $cpu) 1000 | int }}
{{- end }}
{{- end }}

{{/* torch threads per worker: the CPUs of the profile shared by its concurrent workers, at least 1. */}}
{{- define "fashion-clip.threads" -}}
{{- $scaling := (get .root.Values .component).scaling }}
{{- max 1 (div (include "fashion-clip.cpuMillis" . | int) (mul 1000 (int $scaling.concurrency))) }}
{{- end }}

{{/* HPA and Deployment floor: Kubernetes' HPA cannot scale to zero. */}}
{{- define "fashion-clip.minReplicas" -}}
{{- max 1 (int (get .root.Values .component).scaling.minInstances) }}
{{- end }}

{{/* requests = limits, as Cloud Run allocates: a pod gets exactly its profile (Guaranteed QoS). */}}
{{- define "fashion-clip.resources" -}}
{{- $scaling := (get .root.Values .component).scaling -}}
requests:
  cpu: {{ toString $scaling.cpu | quote }}
  memory: {{ $scaling.memory | quote }}
limits:
  cpu: {{ toString $scaling.cpu | quote }}
  memory: {{ $scaling.memory | quote }}
{{- end }}

{{/* What the schema cannot say: relations between values. Fails the render with the key named. */}}
{{- define "fashion-clip.validate" -}}
{{- range $component := splitList " " (include "fashion-clip.components" $) }}
{{- $scaling := (get $.Values $component).scaling }}
{{- if gt (int $scaling.minInstances) (int $scaling.maxInstances) }}
{{- fail (printf "%s.scaling.minInstances (%v) is greater than %s.scaling.maxInstances (%v)" $component $scaling.minInstances $component $scaling.maxInstances) }}
{{- end }}
{{- end }}
{{- if and $.Values.api.adminToken.existingSecret $.Values.api.adminToken.generate }}
{{- fail "api.adminToken: set existingSecret or generate, not both" }}
{{- end }}
{{- end }}

{{- define "fashion-clip.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The restricted Pod Security Standard, per container. */}}
{{- define "fashion-clip.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* startup/readiness/liveness httpGet probes from a `probes` values block, on the named port. */}}
{{- define "fashion-clip.probes" -}}
{{- range $kind := list "startup" "readiness" "liveness" }}
{{- with (get $.probes $kind) }}
{{ $kind }}Probe:
  httpGet:
    path: {{ .path }}
    {{- if $.port }}
    port: {{ $.port }}
    {{- end }}
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
  {{- with .initialDelaySeconds }}
  initialDelaySeconds: {{ . }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* URL the API calls the model server at. */}}
{{- define "fashion-clip.modelServerUrl" -}}
{{- $name := include "fashion-clip.componentName" (dict "root" . "component" "modelServer") }}
{{- if eq .Values.modelServer.runtime "kserve" }}
{{- /* Knative's cluster-local route of the predictor (port 80). */}}
{{- printf "http://%s-predictor.%s.svc.cluster.local" $name .Release.Namespace }}
{{- else }}
{{- printf "http://%s:%v" $name .Values.modelServer.service.port }}
{{- end }}
{{- end }}

{{/*
A component's settings: the `env` block of its values plus what the chart derives from the
scaling profile and the wiring between components. Rendered into its ConfigMap; the Cloud Run
generator derives the same names the same way.
*/}}
{{- define "fashion-clip.settings" -}}
{{- $values := get .root.Values .component }}
{{- $facts := include "fashion-clip.facts" . | fromYaml }}
{{- $settings := dict }}
{{- range $key, $value := $values.env }}
{{- $_ := set $settings $key (toString $value) }}
{{- end }}
{{- if eq .component "modelServer" }}
{{- $_ := set $settings "MODEL_SERVER_THREADS" (include "fashion-clip.threads" .) }}
{{- if eq $values.runtime "torchserve" }}
{{- $_ := set $settings "TS_DEFAULT_WORKERS_PER_MODEL" (toString $values.scaling.concurrency) }}
{{- $_ := set $settings "TS_INFERENCE_ADDRESS" (printf "http://0.0.0.0:%v" $facts.httpPort) }}
{{- $_ := set $settings "TS_METRICS_ADDRESS" (printf "http://0.0.0.0:%v" $facts.metricsPort) }}
{{- $_ := set $settings "TS_MANAGEMENT_ADDRESS" (printf "http://127.0.0.1:%v" $facts.managementPort) }}
{{- end }}
{{- else if eq .component "api" }}
{{- $_ := set $settings "RECOMMENDER_HOST" "0.0.0.0" }}
{{- $_ := set $settings "RECOMMENDER_PORT" (toString $facts.httpPort) }}
{{- $_ := set $settings "RECOMMENDER_LIMIT_CONCURRENCY" (toString (add $values.scaling.concurrency $values.connectionHeadroom)) }}
{{- $_ := set $settings "RECOMMENDER_EMBEDDER__BACKEND" .root.Values.modelServer.runtime }}
{{- $_ := set $settings "RECOMMENDER_EMBEDDER__URL" (include "fashion-clip.modelServerUrl" .root) }}
{{- $_ := set $settings "RECOMMENDER_EMBEDDER__MODEL_NAME" (default "clip" .root.Values.modelServer.env.MODEL_SERVER_MODEL_NAME) }}
{{- else }}
{{- $api := include "fashion-clip.componentName" (dict "root" .root "component" "api") }}
{{- $_ := set $settings "FRONTEND_API_URL" (printf "http://%s:%v" $api .root.Values.api.service.port) }}
{{- $_ := set $settings "STREAMLIT_SERVER_ADDRESS" "0.0.0.0" }}
{{- $_ := set $settings "STREAMLIT_SERVER_PORT" (toString $facts.httpPort) }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/*
The container's args (the image's CMD; its ENTRYPOINT, tini for the model server, stays in front).
*/}}
{{- define "fashion-clip.args" -}}
{{- $values := get .root.Values .component }}
{{- if eq .component "modelServer" }}
{{- toJson (get $values $values.runtime).args }}
{{- else }}
{{- toJson $values.args }}
{{- end }}
{{- end }}

{{/* The probes block of a component. */}}
{{- define "fashion-clip.probeValues" -}}
{{- $values := get .root.Values .component }}
{{- if eq .component "modelServer" }}
{{- toYaml (get $values $values.runtime).probes }}
{{- else }}
{{- toYaml $values.probes }}
{{- end }}
{{- end }}

{{/* The component is a Deployment (the model server is one only with runtime torchserve). */}}
{{- define "fashion-clip.isDeployment" -}}
{{- if or (ne .component "modelServer") (eq .root.Values.modelServer.runtime "torchserve") }}true{{ end }}
{{- end }}

{{/* The Secret holding the API's admin token, or "" when there is none. */}}
{{- define "fashion-clip.adminTokenSecret" -}}
{{- $token := .Values.api.adminToken }}
{{- if $token.existingSecret }}
{{- $token.existingSecret }}
{{- else if $token.generate }}
{{- printf "%s-admin-token" (include "fashion-clip.componentName" (dict "root" . "component" "api")) }}
{{- end }}
{{- end }}
