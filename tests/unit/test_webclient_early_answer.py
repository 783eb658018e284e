"""The fuzz client reads an answer the server gave before the request body was sent whole.

A server may refuse a request from its headers (401, 413) and close without
reading a big body; the client's write then fails with EPIPE/ECONNRESET. The
web fuzz once counted that as "a reset connection" (flaky, depending on how
much of the body got out first), though the worker had answered correctly.
"""

from __future__ import annotations

import socket
import threading

from tests.chaos.webclient import request


def test_an_answer_sent_before_the_body_was_read_is_returned() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def answer_early_and_close() -> None:
        conn, _ = srv.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 24\r\nConnection: close\r\n\r\n"
                         b'{"error": "too large!!"}')
            # closed with most of the body unread: the kernel answers the rest with RST

    t = threading.Thread(target=answer_early_and_close, daemon=True)
    t.start()
    try:
        reply = request(port, "POST", "/x", body=b"a" * 9_000_000,
                        headers={"Content-Type": "application/json"})
    finally:
        t.join(10)
        srv.close()
    assert reply.status == 413 and reply.json() == {"error": "too large!!"}
