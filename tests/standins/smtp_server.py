"""A real SMTP server for the e-mail sink's tests: aiosmtpd's ``Controller``.

aiosmtpd is a maintained asyncio SMTP server (the successor of the standard
library's ``smtpd``); it speaks the protocol the standard library's ``smtplib``
client talks (EHLO, MAIL FROM, RCPT TO, DATA). Received messages are parsed
with :mod:`email` and kept in :attr:`SmtpStandin.messages`.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from sre_agent.devstack import free_port

__all__ = ["SmtpStandin"]


class _Handler:
    def __init__(self, sink: list[tuple[list[str], EmailMessage]]) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.sink.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpStandin:
    """``with SmtpStandin() as smtp:`` — listens on ``smtp.host``:``smtp.port``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.received: list[tuple[list[str], EmailMessage]] = []
        self._controller = Controller(_Handler(self.received), hostname=host, port=self.port)

    @property
    def messages(self) -> list[EmailMessage]:
        return [m for _, m in self.received]

    def __enter__(self) -> SmtpStandin:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
