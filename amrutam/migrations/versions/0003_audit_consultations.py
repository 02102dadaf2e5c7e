"""Roles, the partitioned append-only audit trail, consultations and prescriptions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Roles (cluster-wide, created once):
- ``amrutam_owner`` (NOLOGIN) owns every table and runs DDL such as partition
  maintenance; administrators and migrations act as it with ``SET ROLE``.
- ``amrutam_app`` (LOGIN) is what the API and workers connect as: ordinary DML on the
  business tables, but only INSERT and SELECT on the audit trail.
Whatever the role, a trigger refuses UPDATE, DELETE and TRUNCATE on audit rows; the
one exception is partition maintenance moving rows out of the default partition,
which must run as the owner and say so (``SET LOCAL amrutam.audit_maintenance = on``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op

from amrutam.audit.partitions import MONTHLY, create_partition_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUSINESS_TABLES = (
    "users",
    "refresh_tokens",
    "doctors",
    "availability_slots",
    "appointments",
    "consultations",
    "prescriptions",
    "audit_seals",
)


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amrutam_owner') THEN
                CREATE ROLE amrutam_owner NOLOGIN;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amrutam_app') THEN
                CREATE ROLE amrutam_app LOGIN;
            END IF;
        END $$
        """
    )
    op.execute(
        """
        CREATE TABLE consultations (
            id uuid PRIMARY KEY,
            appointment_id uuid NOT NULL UNIQUE REFERENCES appointments (id),
            doctor_id uuid NOT NULL REFERENCES doctors (user_id),
            patient_id uuid NOT NULL REFERENCES users (id),
            status varchar(16) NOT NULL DEFAULT 'started'
                CHECK (status IN ('started', 'completed')),
            started_at timestamptz NOT NULL DEFAULT now(),
            completed_at timestamptz,
            notes text,
            diagnosis text
        )
        """
    )
    op.execute("CREATE INDEX ix_consultations_patient ON consultations (patient_id, started_at)")
    op.execute("CREATE INDEX ix_consultations_doctor ON consultations (doctor_id, started_at)")
    op.execute(
        """
        CREATE TABLE prescriptions (
            id uuid PRIMARY KEY,
            consultation_id uuid NOT NULL REFERENCES consultations (id),
            doctor_id uuid NOT NULL REFERENCES doctors (user_id),
            patient_id uuid NOT NULL REFERENCES users (id),
            items jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
            notes text,
            issued_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_prescriptions_patient ON prescriptions (patient_id, issued_at, id)")
    op.execute("CREATE INDEX ix_prescriptions_consultation ON prescriptions (consultation_id)")

    op.execute(
        """
        CREATE TABLE audit_logs (
            id uuid NOT NULL,
            occurred_at timestamptz NOT NULL,
            actor_id uuid,
            actor_role varchar(16),
            action varchar(64) NOT NULL,
            entity_type varchar(32),
            entity_id varchar(64),
            request_id varchar(128),
            ip varchar(64),
            detail jsonb NOT NULL DEFAULT '{}',
            row_hash char(64) NOT NULL,
            PRIMARY KEY (occurred_at, id)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute("CREATE TABLE audit_logs_default PARTITION OF audit_logs DEFAULT")
    for name, columns in {
        "ix_audit_actor": "actor_id, occurred_at",
        "ix_audit_action": "action, occurred_at",
        "ix_audit_entity": "entity_type, entity_id, occurred_at",
    }.items():
        op.execute(f"CREATE INDEX {name} ON audit_logs ({columns})")
    op.execute(
        """
        CREATE TABLE audit_seals (
            period_start timestamptz PRIMARY KEY,
            period_end timestamptz NOT NULL,
            row_count integer NOT NULL,
            digest char(64) NOT NULL,
            previous_digest char(64),
            sealed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION audit_logs_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE'
               AND TG_TABLE_NAME = 'audit_logs_default'
               AND current_setting('amrutam.audit_maintenance', true) = 'on'
               AND pg_has_role(current_user, 'amrutam_owner', 'USAGE') THEN
                RETURN OLD;  -- partition maintenance moving rows; it audits itself
            END IF;
            RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_logs_no_update_delete BEFORE UPDATE OR DELETE ON audit_logs "
        "FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only()"
    )
    # Statement triggers do not reach partitions: each partition gets its own.
    op.execute(
        "CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs_default "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()"
    )
    now = datetime.now(UTC)
    for period in (MONTHLY.floor(now), MONTHLY.next(MONTHLY.floor(now))):
        for statement in create_partition_sql("audit_logs", MONTHLY, period):
            op.execute(statement)

    for table in (*BUSINESS_TABLES, "audit_logs", "audit_logs_default"):
        op.execute(f"ALTER TABLE {table} OWNER TO amrutam_owner")
    op.execute("ALTER FUNCTION audit_logs_append_only() OWNER TO amrutam_owner")
    op.execute("GRANT USAGE, CREATE ON SCHEMA public TO amrutam_owner")  # new partitions
    op.execute("GRANT USAGE ON SCHEMA public TO amrutam_app")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(BUSINESS_TABLES)} TO amrutam_app"
    )
    op.execute("REVOKE UPDATE, DELETE ON audit_seals FROM amrutam_app")
    op.execute("GRANT SELECT, INSERT ON audit_logs TO amrutam_app")


def downgrade() -> None:
    op.execute("DROP TABLE audit_seals")
    op.execute("DROP TABLE audit_logs")
    op.execute("DROP FUNCTION audit_logs_append_only()")
    op.execute("DROP TABLE prescriptions")
    op.execute("DROP TABLE consultations")
