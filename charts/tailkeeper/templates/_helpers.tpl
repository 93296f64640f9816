{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "tailkeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains the chart name.
*/}}
{{- define "tailkeeper.fullname" -}}
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

{{- define "tailkeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "tailkeeper.labels" -}}
helm.sh/chart: {{ include "tailkeeper.chart" . }}
{{ include "tailkeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tailkeeper
{{- end }}

{{/*
Selector labels (stable across upgrades).
*/}}
{{- define "tailkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tailkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "tailkeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tailkeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference; the tag defaults to the appVersion.
*/}}
{{- define "tailkeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Name of the operator's (Cluster)Role and its binding.
*/}}
{{- define "tailkeeper.operatorRoleName" -}}
{{- include "tailkeeper.fullname" . }}
{{- end }}

{{/*
Name of the leader-election Role and its binding (release namespace).
*/}}
{{- define "tailkeeper.leaderElectionRoleName" -}}
{{- printf "%s-leader-election" (include "tailkeeper.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The rules the operator needs, in one place for the ClusterRole and the namespaced Role.
*/}}
{{- define "tailkeeper.operatorRules" -}}
# Read the three kinds (watch-driven reconcilers).
- apiGroups: ["tailkeeper.io"]
  resources: ["tailscaleintegrations", "accesspolicies", "accessgrants"]
  verbs: ["get", "list", "watch"]
# Write status through the status subresource (server-side apply).
- apiGroups: ["tailkeeper.io"]
  resources: ["tailscaleintegrations/status", "accesspolicies/status", "accessgrants/status"]
  verbs: ["get", "patch", "update"]
# The grant ledgers: the operator's own record of what it changed in Tailscale, written before
# each change. Nobody else writes them.
- apiGroups: ["tailkeeper.io"]
  resources: ["grantledgers"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
# Add and remove the revocation finalizer of grants. Never a user's spec otherwise.
- apiGroups: ["tailkeeper.io"]
  resources: ["accessgrants"]
  verbs: ["patch", "update"]
# Access reviews: read campaigns and reviewers' decisions, record what became of them, and
# start the next campaign of a recurring one. Never a reviewer's decision itself.
- apiGroups: ["tailkeeper.io"]
  resources: ["accessreviews", "accessreviewdecisions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["tailkeeper.io"]
  resources: ["accessreviews/status", "accessreviewdecisions/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["tailkeeper.io"]
  resources: ["accessreviews"]
  verbs: ["create"]
# A campaign's items (in records it owns) and evidence (immutable, owned by nothing, kept safe
# from deletion for the policy's evidenceRetention; watched, by label, to say when it ends).
- apiGroups: ["tailkeeper.io"]
  resources: ["accessreviewrecords"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The four checks as OpenReports Reports (when that CRD is installed), one per AccessPolicy.
- apiGroups: ["openreports.io"]
  resources: ["reports"]
  verbs: ["get", "create", "patch"]
# People directories held in ConfigMaps (read); each AccessPolicy's entitlements inventory,
# published as ConfigMaps the policy owns (written, and deleted when it shrinks).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events on every change in Tailscale and every failure (a repeat is a PATCH).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
