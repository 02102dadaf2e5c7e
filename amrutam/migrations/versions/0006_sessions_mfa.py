"""Sessions people can see and end, and TOTP second factors.

A session is a refresh-token family: created at login, touched by every refresh, ended by
logout, by its owner from another device, or by a reused refresh token. Families that
exist already become sessions (without user agent or address: nobody recorded them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("auth_sessions", "mfa_factors", "mfa_recovery_codes")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE auth_sessions (
            id uuid PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            user_agent varchar(256),
            ip varchar(64),
            second_factor boolean NOT NULL DEFAULT false,
            revoked_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_auth_sessions_user_open ON auth_sessions (user_id) "
        "WHERE revoked_at IS NULL"
    )
    # The revocations still able to matter (younger than an access token) are re-sent
    # to Redis by a periodic task.
    op.execute(
        "CREATE INDEX ix_auth_sessions_revoked ON auth_sessions (revoked_at) "
        "WHERE revoked_at IS NOT NULL"
    )
    # Revoking a family revokes every token of it, so any revoked token means it ended.
    op.execute(
        """
        INSERT INTO auth_sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at)
        SELECT family_id, user_id, min(created_at),
               max(coalesce(used_at, created_at)), max(expires_at), max(revoked_at)
        FROM refresh_tokens GROUP BY family_id, user_id
        """
    )
    op.execute(
        """
        CREATE TABLE mfa_factors (
            user_id uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            secret_sealed text NOT NULL,
            enabled_at timestamptz,
            last_step bigint,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE mfa_recovery_codes (
            user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            code_hash char(64) NOT NULL,
            used_at timestamptz,
            PRIMARY KEY (user_id, code_hash)
        )
        """
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} OWNER TO amrutam_owner")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO amrutam_app")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
