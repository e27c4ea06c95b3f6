"""A small HTTP/1.1 server on asyncio streams, with WebSocket upgrades on the same port.

Just what an Alpaca client needs: keep-alive requests whose body has a Content-Length (no
chunked uploads), answers with a Content-Length, and WebSocket connections carried by the
`websockets` library's Sans-I/O protocol (handshake, framing, ping/pong, closing), so the
REST API, the trade stream and the data stream share one port. An answer can also go missing
the way a flaky network loses it: the connection reset, or the answer held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from attrs import define, field
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as Handshake
from websockets.server import ServerProtocol

__all__ = [
    "OnRequest",
    "OnWebSocket",
    "Request",
    "Response",
    "WebSocket",
    "serve",
]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 1 << 20
_CLOSE_WAIT = 2.0  # seconds a closing handshake may wait for the peer to read


@define
class Request:
    """One HTTP request: header names lower-cased, the query parsed, the body read."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    version: str = "HTTP/1.1"


@define
class Response:
    """An answer; `action` "reset" cuts the connection instead, "slow" answers after
    `delay` seconds."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(factory=list)
    action: Literal["answer", "reset", "slow"] = "answer"
    delay: float = 0.0


OnRequest = Callable[[Request], Awaitable[Response]]
OnWebSocket = Callable[[Request, "WebSocket"], Awaitable[None]]


class WebSocket:
    """One accepted WebSocket connection: whole messages in, whole messages out."""

    def __init__(
        self, protocol: ServerProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._protocol, self._reader, self._writer = protocol, reader, writer
        self._messages: deque[str | bytes] = deque()
        self._partial: list[bytes] = []
        self._partial_text = False
        self.closed = False

    async def recv(self) -> str | bytes | None:
        """The next message from the client, or None once the connection is closed."""
        while not self._messages:
            if self.closed:
                return None
            try:
                data = await self._reader.read(65536)
            except ConnectionError:
                data = b""
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            for event in self._protocol.events_received():
                if isinstance(event, Frame):
                    self._collect(event)
            self._flush()
            if not data or self._protocol.close_rcvd is not None:
                self.closed = True
        return self._messages.popleft()

    def _collect(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._partial = [bytes(frame.data)]
            self._partial_text = frame.opcode is Opcode.TEXT
        elif frame.opcode is Opcode.CONT:
            self._partial.append(bytes(frame.data))
        else:
            return
        if frame.fin:
            whole = b"".join(self._partial)
            self._partial = []
            self._messages.append(whole.decode() if self._partial_text else whole)

    async def send(self, message: str | bytes) -> None:
        """Send one message (text for str, binary for bytes); a closed connection drops it."""
        if self.closed:
            return
        if isinstance(message, str):
            self._protocol.send_text(message.encode())
        else:
            self._protocol.send_binary(message)
        self._flush()
        try:
            await self._writer.drain()
        except ConnectionError:
            self.closed = True

    async def close(self) -> None:
        """Close cleanly (the closing handshake)."""
        if not self.closed:
            self._protocol.send_close()
            self._flush()
            self.closed = True
            # A peer that stops reading must not hold the exchange's shutdown up.
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await self._writer.drain()
            self._writer.close()

    def abort(self) -> None:
        """Drop the connection without a goodbye, as a network failure would."""
        self.closed = True
        _reset(self._writer)

    def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._writer.write(chunk)
            elif self._writer.can_write_eof():
                with contextlib.suppress(OSError):
                    self._writer.write_eof()


async def serve(
    host: str, port: int, on_request: OnRequest, on_websocket: OnWebSocket
) -> asyncio.Server:
    """Listen on host:port; every request goes to `on_request`, every WebSocket upgrade
    (after a successful handshake) to `on_websocket`."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _connection(reader, writer, on_request, on_websocket)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is shutting down: the connection ends with it
        finally:
            if not writer.is_closing():
                writer.close()

    return await asyncio.start_server(connection, host, port, limit=_MAX_HEAD)


async def _connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_request: OnRequest,
    on_websocket: OnWebSocket,
) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        except asyncio.LimitOverrunError:
            await _answer(writer, Response(431, b"", None), close=True)
            return
        try:
            request = _parse(head)
        except ValueError:
            await _answer(writer, Response(400, b"", None), close=True)
            return
        if request.headers.get("upgrade", "").lower() == "websocket":
            await _upgrade(head, request, reader, writer, on_websocket)
            return
        if "transfer-encoding" in request.headers:
            await _answer(writer, Response(411, b"", None), close=True)
            return
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_BODY:
            await _answer(writer, Response(413, b"", None), close=True)
            return
        if request.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.body = await reader.readexactly(int(length)) if int(length) else b""
        response = await on_request(request)
        if response.action == "reset":
            _reset(writer)
            return
        if response.action == "slow":
            await asyncio.sleep(response.delay)
            if writer.is_closing():
                return
        connection = request.headers.get("connection", "").lower()
        close = connection == "close" or (
            request.version == "HTTP/1.0" and connection != "keep-alive"
        )
        await _answer(writer, response, close)
        if close:
            return


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(version)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(line)
        headers[name.strip().lower()] = value.strip()
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    return Request(method.upper(), url.path, query, headers, version=version)


async def _answer(writer: asyncio.StreamWriter, response: Response, close: bool) -> None:
    status = HTTPStatus(response.status)
    lines = [f"HTTP/1.1 {status.value} {status.phrase}"]
    if response.content_type is not None and status.value != 204:
        lines.append(f"Content-Type: {response.content_type}")
    if status.value != 204:
        lines.append(f"Content-Length: {len(response.body)}")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head + (b"" if status.value == 204 else response.body))
    await writer.drain()


async def _upgrade(
    head: bytes,
    request: Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    on_websocket: OnWebSocket,
) -> None:
    protocol = ServerProtocol(max_size=1 << 20)
    protocol.receive_data(head)
    handshakes = [e for e in protocol.events_received() if isinstance(e, Handshake)]
    if not handshakes:
        await _answer(writer, Response(400, b"", None), close=True)
        return
    reply = protocol.accept(handshakes[0])
    protocol.send_response(reply)
    for chunk in protocol.data_to_send():
        if chunk:
            writer.write(chunk)
    await writer.drain()
    if reply.status_code != 101:
        return
    await on_websocket(request, WebSocket(protocol, reader, writer))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Cut the connection with a TCP reset (SO_LINGER 0), as a dropped link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
