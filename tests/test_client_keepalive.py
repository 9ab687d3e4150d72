"""The client on a kept-alive connection the server closes under it: a request that changes
nothing goes again on a new connection; one that may have changed something is not resent and
fails with the server's address. And phloem's own server keeps an idle connection longer than
the client reuses one, so the race does not arise between the two."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from phloem import client as client_module
from phloem.client import Client
from phloem.errors import ServerError
from phloem.server import process


class ClosingServer:
    """An HTTP/1.1 server on a socket that resets each connection when its second request
    arrives, as a server whose idle timeout ran out as the request went out does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[tuple[int, str]] = []  # (connection number, request line)
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn, self.connections), daemon=True).start()

    def _talk(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        with conn:
            for served in range(2):
                line = reader.readline().decode().strip()
                if not line:
                    return
                self.seen.append((number, line))
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reader.read(length)
                if served == 1:  # close with a reset, the request unanswered
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                body = json.dumps([] if line.startswith("GET") else {"name": "p"}).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    s = ClosingServer()
    yield s
    s.close()


def test_a_read_goes_again_on_a_new_connection(server: ClosingServer) -> None:
    with Client(server.url) as c:
        assert c.variables() == []
        assert c.variables() == []  # the first connection was reset under this one
    assert server.seen == [
        (1, "GET /api/v1/variables HTTP/1.1"),
        (1, "GET /api/v1/variables HTTP/1.1"),
        (2, "GET /api/v1/variables HTTP/1.1"),
    ]


def test_a_change_is_not_sent_twice(server: ClosingServer) -> None:
    with Client(server.url) as c:
        assert c.pause("p") == "p"
        with pytest.raises(ServerError, match=f"cannot reach the phloem server at {server.url}"):
            c.pause("p")
    assert server.seen == [
        (1, "POST /api/v1/pipelines/p/pause HTTP/1.1"),
        (1, "POST /api/v1/pipelines/p/pause HTTP/1.1"),
    ]


def test_the_server_keeps_a_connection_longer_than_the_client_reuses_it() -> None:
    assert client_module.KEEPALIVE_EXPIRY < process.KEEP_ALIVE
