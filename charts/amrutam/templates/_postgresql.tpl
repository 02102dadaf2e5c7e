{{/* The database host's pgbackrest.conf (backups.enabled): its ConfigMap, and a checksum
on the StatefulSet's pod so that a change restarts the database. */}}
{{- define "amrutam.pgbackrestDbConf" -}}
[global]
repo1-type=s3
repo1-path={{ .Values.backups.repo.path }}
repo1-s3-bucket={{ .Values.backups.repo.s3.bucket }}
repo1-s3-endpoint={{ .Values.backups.repo.s3.endpoint }}
repo1-s3-region={{ .Values.backups.repo.s3.region }}
repo1-s3-uri-style={{ .Values.backups.repo.s3.uriStyle }}
repo1-s3-key-type={{ .Values.backups.repo.s3.keyType }}
{{- with .Values.backups.repo.s3.port }}
repo1-storage-port={{ . }}
{{- end }}
{{- if .Values.backups.repo.s3.caSecret }}
repo1-storage-ca-file=/etc/pgbackrest/s3-ca/ca.crt
{{- end }}
tls-server-address=*
tls-server-port=8432
tls-server-ca-file=/etc/pgbackrest/tls/ca.crt
tls-server-cert-file=/etc/pgbackrest/tls/tls.crt
tls-server-key-file=/etc/pgbackrest/tls/tls.key
tls-server-auth=pgbackrest-client={{ .Values.backups.stanza }}
archive-async=y
spool-path=/tmp/pgbackrest
log-path=/tmp/pgbackrest
lock-path=/tmp/pgbackrest
log-level-file=off

[{{ .Values.backups.stanza }}]
pg1-path=/var/lib/postgresql/data/pgdata
pg1-port=5432
pg1-socket-path=/var/run/postgresql
{{- end -}}
