"""Where a message goes: a provider interface and its two real implementations."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Protocol

from amrutam.infra.logs import get_logger
from amrutam.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class Message:
    notification_id: str
    kind: str
    to_name: str
    to_email: str
    subject: str
    body: str


class DeliveryFailed(Exception):
    """The provider did not accept the message; the task retries with backoff."""


class Provider(Protocol):
    def send(self, message: Message) -> None: ...


class LogProvider:
    """The default: each message as one structured log line (no mail server needed)."""

    def send(self, message: Message) -> None:
        log.info(
            "notification.sent",
            provider="log",
            notification_id=message.notification_id,
            kind=message.kind,
            to=message.to_email,
            subject=message.subject,
        )


def recipient(message: Message) -> Address:
    """The To: address. The display name is the user's own text: as an Address it is
    quoted and encoded, so commas, brackets or line breaks in it can never add, replace
    or drop recipients."""
    name = " ".join(message.to_name.split())  # no line breaks in a header
    username, _, domain = message.to_email.rpartition("@")
    return Address(display_name=name, username=username, domain=domain)


class SmtpProvider:
    """Email through any SMTP server (the standard library's client)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def send(self, message: Message) -> None:
        s = self._settings
        mail = EmailMessage()
        mail["From"] = s.smtp_from
        mail["To"] = recipient(message)
        mail["Subject"] = message.subject
        # A stable id lets a mailbox drop the duplicate of a redelivered message.
        mail["Message-ID"] = f"<{message.notification_id}@amrutam>"
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username and s.smtp_password:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc


def provider_for(settings: Settings) -> Provider:
    return SmtpProvider(settings) if settings.notification_provider == "smtp" else LogProvider()
