"""The tables the ORM maps (accounts and refresh tokens), gathered for Alembic.

The schema itself is the hand-written migrations in ``versions/``; the hot paths use
plain SQL. ``tests/core/test_schema.py`` checks these classes against the migrated
database, so the two cannot drift apart.
"""

from sqlmodel import SQLModel

from amrutam.auth.models import RefreshToken, User

metadata = SQLModel.metadata

__all__ = ["RefreshToken", "User", "metadata"]
