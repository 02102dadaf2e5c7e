{{- define "amrutam.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* 50, not 63: objects add suffixes such as "-postgresql-metrics" to it. */}}
{{- define "amrutam.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "amrutam.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "amrutam.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amrutam.labels" -}}
app.kubernetes.io/name: {{ include "amrutam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "amrutam.selector" -}}
app.kubernetes.io/name: {{ include "amrutam.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "amrutam.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "amrutam.secretName" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-env" (include "amrutam.fullname" .)) }}
{{- end -}}

{{/* Environment shared by every process: settings, then secrets. */}}
{{- define "amrutam.envFrom" -}}
- configMapRef:
    name: {{ include "amrutam.fullname" . }}-env
- secretRef:
    name: {{ include "amrutam.secretName" . }}
{{- end -}}

{{- /* The API's secrets, one by one: it never receives the administrator's database URL
(which may bypass the append-only audit trail's privileges) or role passwords. */}}
{{- define "amrutam.apiSecretEnv" -}}
{{- $secret := include "amrutam.secretName" . }}
{{- range list "AMRUTAM_DATABASE_URL" "AMRUTAM_REDIS_URL" "AMRUTAM_JWT_SECRET" "AMRUTAM_AUDIT_SIGNING_KEY" "AMRUTAM_MFA_ENCRYPTION_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ . }}}
{{- end }}
{{- end -}}

{{- define "amrutam.podSecurity" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "amrutam.topology" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .root.Values.topologySpread.maxSkew }}
    topologyKey: {{ .root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ .root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "amrutam.selector" . | nindent 8 }}
  # Within a zone, across nodes: one node drained or lost takes one replica at most.
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "amrutam.selector" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* A writable /tmp on a read-only root filesystem. */}}
{{- define "amrutam.tmpVolume" -}}
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}
{{- define "amrutam.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pods roll when their settings, or what the Secret is made of (its plan, the given
values), change. */}}
{{- define "amrutam.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}


{{/* Where a component's pods run, from its values (dict "root" $ "component" "api"
"values" .Values.api): node selection, tolerations, affinity, priority, and the zone
spread (its own constraints, else the chart's default). */}}
{{- define "amrutam.placement" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml .values.topologySpreadConstraints | nindent 2 }}
{{- else if .spread }}
{{- include "amrutam.topology" . }}
{{- end }}
{{- end -}}

{{/* A component's pod annotations: what rolls it on a change, then its own. */}}
{{- define "amrutam.podAnnotations" -}}
{{- include "amrutam.checksums" .root }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Static S3 keys for pgBackRest (repo.s3.keyType shared; web-id uses the pod's identity). */}}
{{- define "amrutam.s3Keys" -}}
{{- $secret := required "backups.repo.s3.credentialsSecret is required with keyType shared" .Values.backups.repo.s3.credentialsSecret }}
- name: PGBACKREST_REPO1_S3_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: key}}
- name: PGBACKREST_REPO1_S3_KEY_SECRET
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: secret}}
{{- end -}}

{{/* The object store's private CA, where the database host's pgbackrest.conf names it. */}}
{{- define "amrutam.s3CaMount" -}}
{{- if .Values.backups.repo.s3.caSecret }}
- {name: s3-ca, mountPath: /etc/pgbackrest/s3-ca, readOnly: true}
{{- end }}
{{- end -}}

{{/* The database's StatefulSet. Its claim templates can never change, so a release on
an existing claim (a PointInTimeRestore's) is a StatefulSet of another name: Helm creates
it as it deletes the one it replaces, whose own claim stays with the data it held.
52: the pod's controller-revision-hash label adds 11 characters, and labels stop at 63. */}}
{{- define "amrutam.postgresqlName" -}}
{{- $full := include "amrutam.fullname" . -}}
{{- with .Values.postgresql.existingClaim -}}
{{- printf "%s-pg-%s" $full (. | replace "." "-") | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-postgresql" $full -}}
{{- end -}}
{{- end -}}
