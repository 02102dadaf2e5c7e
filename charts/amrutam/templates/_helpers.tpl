{{- define "amrutam.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "amrutam.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "amrutam.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
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
{{- range list "AMRUTAM_DATABASE_URL" "AMRUTAM_REDIS_URL" "AMRUTAM_JWT_SECRET" "AMRUTAM_AUDIT_SIGNING_KEY" }}
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

{{/* Pods roll when what the Secret is made of changes (its plan or the given values). */}}
{{- define "amrutam.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}
