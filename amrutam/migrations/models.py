"""Every table, imported in one place so Alembic and tests see the whole schema."""

from sqlmodel import SQLModel

from amrutam.auth.models import RefreshToken, User
from amrutam.doctors.models import Doctor
from amrutam.scheduling.models import Appointment, Slot

metadata = SQLModel.metadata

__all__ = ["Appointment", "Doctor", "RefreshToken", "Slot", "User", "metadata"]
