{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "computenest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or <release> when it already contains the chart name.
*/}}
{{- define "computenest.fullname" -}}
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

{{/*
chart label value.
*/}}
{{- define "computenest.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the controller pods; never change them after a release exists.
*/}}
{{- define "computenest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "computenest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels on every object of the chart. (app.kubernetes.io/managed-by is Helm here; the
controller's own objects carry managed-by=computenest-controller.)
*/}}
{{- define "computenest.labels" -}}
helm.sh/chart: {{ include "computenest.chart" . }}
{{ include "computenest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: computenest
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Name of the controller's ServiceAccount.
*/}}
{{- define "computenest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "computenest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespace of the leader Lease.
*/}}
{{- define "computenest.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/*
Image reference: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "computenest.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Kinds templates may create: controller.allowedKinds, else the controller's built-in list
(keep in sync with default_allowed_kinds() in src/domain/render.rs).
*/}}
{{- define "computenest.allowedKinds" -}}
{{- $kinds := .Values.controller.allowedKinds }}
{{- if not $kinds }}
{{- $kinds = list "v1/ConfigMap/configmaps" "v1/Secret/secrets" "v1/Service/services" "v1/ServiceAccount/serviceaccounts" "v1/PersistentVolumeClaim/persistentvolumeclaims" "apps/v1/Deployment/deployments" "apps/v1/StatefulSet/statefulsets" "batch/v1/Job/jobs" "batch/v1/CronJob/cronjobs" "networking.k8s.io/v1/Ingress/ingresses" "networking.k8s.io/v1/NetworkPolicy/networkpolicies" "policy/v1/PodDisruptionBudget/poddisruptionbudgets" }}
{{- end }}
{{- toJson $kinds }}
{{- end }}

{{/*
The allowed kinds grouped for RBAC, as JSON {"<apiGroup>": ["<plural>", ...]}; the core group is "".
Secrets are always included: the controller writes the <instance>-logon Secret.
*/}}
{{- define "computenest.allowedKindsByGroup" -}}
{{- $groups := dict "" (list "secrets") }}
{{- range $k := include "computenest.allowedKinds" . | fromJsonArray }}
{{- $parts := splitList "/" (trim $k) }}
{{- $group := "" }}
{{- $plural := "" }}
{{- if eq (len $parts) 3 }}
{{- $plural = index $parts 2 }}
{{- else if eq (len $parts) 4 }}
{{- $group = index $parts 0 }}
{{- $plural = index $parts 3 }}
{{- else }}
{{- fail (printf "controller.allowedKinds: %q is not group/version/Kind/plural (core group: v1/Kind/plural)" $k) }}
{{- end }}
{{- $_ := set $groups $group (append (get $groups $group | default list) $plural | uniq | sortAlpha) }}
{{- end }}
{{- toJson $groups }}
{{- end }}

{{/*
The platform's tenancy policy as the controller's JSON (TenancyPolicy, src/domain/tenancy.rs):
the values tenancy, with operatorClusterRole always operatorRole.name, so that the ClusterRole
the chart ships, the only one the controller may bind (templates/rbac.yaml) and the one the
controller binds are the same. Only TenancyPolicy keys: the controller refuses unknown ones.
*/}}
{{- define "computenest.tenancyPolicy" -}}
{{- $t := deepCopy .Values.tenancy }}
{{- $role := include "computenest.operatorRoleName" . }}
{{- if and $t.operatorClusterRole (ne $t.operatorClusterRole $role) }}
{{- fail (printf "tenancy.operatorClusterRole (%q) differs from operatorRole.name (%q): leave tenancy.operatorClusterRole empty and set operatorRole.name, the one name of the operator ClusterRole" $t.operatorClusterRole $role) }}
{{- end }}
{{- $_ := set $t "operatorClusterRole" $role }}
{{- with $t.sizeLimits }}
{{- if and .maxObjectBytes .maxInstanceBytes (lt (float64 .maxInstanceBytes) (float64 .maxObjectBytes)) }}
{{- fail (printf "tenancy.sizeLimits: maxObjectBytes (%d) must be at most maxInstanceBytes (%d)" (int64 .maxObjectBytes) (int64 .maxInstanceBytes)) }}
{{- end }}
{{- end }}
{{- toJson $t }}
{{- end }}

{{/*
Name of the operator ClusterRole (operatorRole.name): the one ClusterRole the controller may
bind. Never a built-in role: with operatorRole.create=false the chart does not see its rules,
and "bind" on admin, edit or cluster-admin would let the controller hand out RBAC writes.
*/}}
{{- define "computenest.operatorRoleName" -}}
{{- $name := .Values.operatorRole.name }}
{{- if or (has $name (list "cluster-admin" "admin" "edit" "view")) (hasPrefix "system:" $name) }}
{{- fail (printf "operatorRole.name %q is a built-in ClusterRole; name a role of its own (the controller gets \"bind\" on it)" $name) }}
{{- end }}
{{- $name }}
{{- end }}
