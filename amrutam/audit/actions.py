"""Every act the audit trail records. A new audited act gets its name here, once."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    AUTH_REGISTER = "auth.register"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_REFRESH = "auth.refresh"
    AUTH_REFRESH_REUSE = "auth.refresh_reuse"
    AUTH_LOGOUT = "auth.logout"
    AUTH_SESSION_REVOKED = "auth.session_revoked"
    # Its detail names the sessions the change ended, as auth.mfa_enabled's does (G7).
    AUTH_PASSWORD_CHANGED = "auth.password_changed"
    AUTH_MFA_CHALLENGED = "auth.mfa_challenged"  # right password, code next
    AUTH_MFA_SETUP = "auth.mfa_setup"
    AUTH_MFA_ENABLED = "auth.mfa_enabled"
    AUTH_MFA_DISABLED = "auth.mfa_disabled"
    AUTH_MFA_FAILED = "auth.mfa_failed"
    DOCTOR_PROFILE_UPDATED = "doctor.profile_updated"
    SLOT_CREATED = "slot.created"
    SLOT_DELETED = "slot.deleted"
    SLOT_HELD = "slot.held"
    SLOT_RELEASED = "slot.released"
    WAITLIST_JOINED = "waitlist.joined"
    WAITLIST_OFFERED = "waitlist.offered"
    APPOINTMENT_BOOKED = "appointment.booked"
    APPOINTMENT_CANCELLED = "appointment.cancelled"
    APPOINTMENT_RESCHEDULED = "appointment.rescheduled"
    APPOINTMENT_NO_SHOW = "appointment.no_show"
    APPOINTMENT_VIEWED = "appointment.viewed"
    CONSULTATION_STARTED = "consultation.started"
    CONSULTATION_COMPLETED = "consultation.completed"
    CONSULTATION_VIEWED = "consultation.viewed"
    CONSULTATION_VIEW_DENIED = "consultation.view_denied"
    PRESCRIPTION_ISSUED = "prescription.issued"
    PRESCRIPTION_VIEWED = "prescription.viewed"
    PRESCRIPTION_VIEW_DENIED = "prescription.view_denied"
    AUDIT_VIEWED = "audit.viewed"
    AUDIT_VERIFIED = "audit.verified"
    AUDIT_PARTITION_ROWS_MOVED = "audit.partition_rows_moved"


# Acts of the platform itself, not of a person through the API.
SYSTEM_ACTIONS = frozenset(
    {Action.APPOINTMENT_NO_SHOW, Action.AUDIT_PARTITION_ROWS_MOVED, Action.WAITLIST_OFFERED}
)
