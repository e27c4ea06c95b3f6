"""Real local servers for the delivery and store tests, all on 127.0.0.1: an HTTP receiver that
records what it is sent and answers from a script, an SMTP server (aiosmtpd), a socket that
accepts and never answers, and a TCP proxy that can be taken down and brought back (the
database, as a client sees it, stopping and starting)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import deque
from collections.abc import Iterable
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from attrs import frozen

__all__ = ["HTTPReceiver", "Mail", "Proxy", "SMTPReceiver", "Silent", "free_port"]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@frozen
class Received:
    """One request the HTTP receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HTTPReceiver:
    """Records every POST; answers each with the next status of `statuses`, then `default`."""

    def __init__(self, statuses: Iterable[int] = (), default: int = 200) -> None:
        self.requests: list[Received] = []
        self.script = deque(statuses)
        self.default = default
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._cond:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    status = receiver.script.popleft() if receiver.script else receiver.default
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"ok"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@frozen
class Mail:
    """One message the SMTP server accepted."""

    sender: str
    recipients: tuple[str, ...]
    message: Message
    raw: bytes
    login: str | None


class SMTPReceiver:
    """aiosmtpd on 127.0.0.1; with `login`/`password` it accepts mail only after that login."""

    def __init__(self, login: str | None = None, password: str | None = None) -> None:
        self.mails: list[Mail] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                raw = bytes(envelope.original_content or envelope.content)
                receiver.mails.append(
                    Mail(
                        envelope.mail_from,
                        tuple(envelope.rcpt_tos),
                        message_from_bytes(raw),
                        raw,
                        session.auth_data,
                    )
                )
                return "250 Message accepted"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            if not isinstance(data, LoginPassword):
                return AuthResult(success=False, handled=False)
            user, given = data.login.decode(), data.password.decode()
            ok = user == login and given == password
            receiver.auth_attempts.append((user, ok))
            if not ok:  # not handled: the server answers 535 itself
                return AuthResult(success=False, handled=False)
            return AuthResult(success=True, auth_data=user)

        kwargs: dict[str, Any] = {}
        if login is not None:
            kwargs = {"authenticator": authenticate, "auth_required": True,
                      "auth_require_tls": False}  # fmt: skip
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


class Silent:
    """Accepts connections (the kernel does, from the backlog) and never answers: a receiver
    that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.sock.close()


class Proxy:
    """Forwards 127.0.0.1:port to `target`. `down()` cuts every connection and stops listening
    (connections are refused, as by a stopped server); `up()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.accepted = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        if listener is not None:
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self.accepted += 1
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.down()
