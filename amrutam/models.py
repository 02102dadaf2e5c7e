"""Every table, imported in one place so Alembic and tests see the whole schema."""

from sqlmodel import SQLModel

from amrutam.auth.models import RefreshToken, User

metadata = SQLModel.metadata

__all__ = ["RefreshToken", "User", "metadata"]
