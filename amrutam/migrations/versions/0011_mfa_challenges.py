"""Second-factor challenges, spent: the first success ends one, and so do too many
wrong codes. A challenge is a signed token any API process accepts; this table is what
they all share about it (G4: one password check gave two sessions).

Rows outlive their challenge by nothing: one whose expires_at has passed is deleted by
the next challenge spent.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE mfa_challenges (
            jti varchar(64) PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            failures smallint NOT NULL DEFAULT 0,
            spent_at timestamptz,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_mfa_challenges_expiry ON mfa_challenges (expires_at)")
    op.execute("ALTER TABLE mfa_challenges OWNER TO amrutam_owner")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_challenges TO amrutam_app")


def downgrade() -> None:
    op.execute("DROP TABLE mfa_challenges")
