"""A real uvicorn: a request whose body stops arriving is answered 408 and closed; a slow body
that keeps coming is served as usual (alliance/body_timeout.py); a Content-Type with a NUL in
it is a 400 from the server itself, never reaching Django (whose charset check would raise
ValueError, a 500, as the Django test client shows)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import VENV_BIN, Proc, base_env, free_port, start, wait_for_http
from .test_worker_integration import database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT_SECONDS = 2


@pytest.fixture
def server(tmp_path: Path, settings) -> Iterator[tuple[Proc, int]]:
    port = free_port()
    web = start(
        "web",
        [
            VENV_BIN / "python",
            "-m",
            "uvicorn",
            "alliance.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=base_env(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            HUB_ENV="test",
            HUB_DATA_DIR=str(tmp_path),
            HUB_REQUEST_BODY_TIMEOUT=str(TIMEOUT_SECONDS),
        ),
        log_dir=tmp_path,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, watch=[web])
        yield web, port
    finally:
        web.stop()


def _post_head(port: int, length: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    connection.sendall(
        (
            "POST /accounts/login/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Accept-Language: en\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
    )
    return connection


def _answer(connection: socket.socket) -> bytes:
    """Everything until the server closes (after a 408 at once; after an answer, when its
    keep-alive ends)."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_body_that_stops_arriving_is_answered_408(server):
    web, port = server
    with _post_head(port, 1000) as connection:
        connection.sendall(b"username=a")  # 10 of the 1,000 bytes announced, then nothing
        answer = _answer(connection)  # the socket's 60-s timeout bounds a server that waits on
    status_line = answer.split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"stopped arriving" in answer
    assert "Traceback" not in web.log_path.read_text()


def test_a_slow_body_that_keeps_coming_is_served(server):
    _web, port = server
    body = b"username=nobody&password=wrong-password&x=" + b"y" * 58
    with _post_head(port, len(body)) as connection:
        for start_at in range(0, len(body), 10):
            connection.sendall(body[start_at : start_at + 10])
            time.sleep(TIMEOUT_SECONDS / 4)  # well inside the timeout each time, 5 s in all
        answer = _answer(connection)
    status_line = answer.split(b"\r\n")[0]
    assert not status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    assert status_line.split()[1] in {b"200", b"403"}  # the sign-in form (or CSRF's refusal)


@pytest.mark.parametrize("content_type", [b"application/json; charset=\x00", b"text/plain\x01"])
def test_a_control_character_in_the_content_type_is_a_400(server, content_type):
    web, port = server
    body = b'{"username": "a", "password": "b"}'
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(
            b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Language: en\r\n"
            b"Connection: close\r\nContent-Type: " + content_type + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = _answer(connection)
    assert answer.split(b"\r\n")[0].startswith(b"HTTP/1.1 400"), answer[:300]
    assert "Traceback" not in web.log_path.read_text()
