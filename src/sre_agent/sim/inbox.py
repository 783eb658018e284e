"""The simulated on-call's mailbox: a real SMTP server the agent's e-mail sink delivers to.

``sre-agent demo`` configures one notification sink of type ``email`` (every
incident, every severity) pointing at this server, so the run can show who was
told what and when, from the messages the agent really sent. The server is
aiosmtpd's ``Controller`` (a maintained asyncio SMTP server, installed with the
``dev`` extra that ``scripts/dev`` installs); without it the demo runs without
the sink and says so.

Each received message is kept as a :class:`Mail` with the sample time at which
it arrived (``clock``: the replayer's sample clock).
"""

from __future__ import annotations

import email
import email.policy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Inbox", "Mail", "available"]


@dataclass(frozen=True)
class Mail:
    received: float
    to: tuple[str, ...]
    subject: str
    incident_id: str
    body: str


def available() -> bool:
    """Is an SMTP server library installed (aiosmtpd, the ``dev`` extra)?"""
    try:
        import aiosmtpd.controller  # noqa: F401
    except ImportError:
        return False
    return True


class _Handler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        self.inbox.add(Mail(received=self.inbox.clock(), to=tuple(envelope.rcpt_tos),
                            subject=str(msg.get("Subject", "")),
                            incident_id=str(msg.get("X-SRE-Agent-Incident", "")),
                            body=body.get_content() if body is not None else ""))
        return "250 Message accepted for delivery"


class Inbox:
    """``with Inbox(clock) as box:`` — an SMTP server on 127.0.0.1:``box.port``."""

    def __init__(self, clock: Callable[[], float], address: str = "oncall@exchange.example",
                 host: str = "127.0.0.1") -> None:
        from aiosmtpd.controller import Controller

        from ..devstack import free_port

        self.clock = clock
        self.address = address
        self.host = host
        self.port = free_port()
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self._controller = Controller(_Handler(self), hostname=host, port=self.port)
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # one line per SMTP verb

    def add(self, mail: Mail) -> None:
        with self._lock:
            self._mails.append(mail)

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def sink(self) -> dict[str, Any]:
        """The ``notify.sinks`` entry that delivers every incident here."""
        return {"name": "oncall-mail", "type": "email", "smtp_host": self.host,
                "smtp_port": self.port, "from_addr": "sre-agent@exchange.example",
                "to": [self.address]}

    def __enter__(self) -> Inbox:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
