"""The SMTP provider against a real SMTP server: a user's name cannot steer the mail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from amrutam.dev.servers import free_port
from amrutam.notifications.providers import Message, SmtpProvider
from amrutam.settings import Settings


class Envelopes:
    def __init__(self) -> None:
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Envelopes, int]]:
    box, port = Envelopes(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.mark.parametrize(
    "name",
    [
        "Asha <attacker@evil.example>, Bob",  # would add a recipient
        'Asha, "x" <attacker@evil.example>',  # would replace the real one
        "Asha\r\nBcc: attacker@evil.example",  # header injection
    ],
)
def test_a_display_name_cannot_add_replace_or_drop_recipients(
    smtp: tuple[Envelopes, int], name: str
) -> None:
    box, port = smtp
    settings = Settings(_env_file=None, smtp_port=port)  # type: ignore[call-arg]
    SmtpProvider(settings).send(
        Message("n-1", "booking_confirmation", name, "victim@example.com", "Hello", "Body")
    )
    assert box.recipients == [["victim@example.com"]]
