"""flowcoro.websocket — WebSocket (RFC 6455) with permessage-deflate (RFC 7692).

Layers (data flows down):

* :class:`WebSocketConnection` — one open connection over an asyncio
  transport, client or server side: ``send`` / ``send_text`` /
  ``send_binary``, ``receive``, ``async for``, ``ping`` (awaitable pong),
  automatic pongs, keep-alive pings, ``close`` with the closing handshake,
  write backpressure and a bounded send buffer.
* :func:`connect` — the client for ws:// and wss:// URLs.
* :func:`accept_request` / :class:`ServerHandshake` — the server's side of
  the opening handshake, sans-IO (the HTTP server calls it with a parsed
  request head); :func:`reject_response` writes a refusal.
* :class:`FrameParser` / :class:`FrameBuilder` — the sans-IO framing core in
  C (csrc/ws/): incremental parsing, word-at-a-time masking, reassembly,
  incremental UTF-8 validation, close-code checks, size limits.

Example (client)::

    import flowcoro
    from flowcoro.websocket import connect

    async def main():
        async with connect("ws://127.0.0.1:8765/chat") as ws:
            await ws.send("hello")
            print(await ws.receive())

    flowcoro.run(main())

Details, errors and limits: docs/websocket.md.
"""
from flowcoro._core.wsframe import (Close, FrameBuilder, FrameParser, Ping, Pong, Utf8Validator,
                                    close_code_valid, mask, utf8_valid)
from flowcoro.errors import (WebSocketClosed, WebSocketDataError, WebSocketError,
                             WebSocketHandshakeError, WebSocketProtocolError,
                             WebSocketTimeoutError, WebSocketTooBigError)
from flowcoro.websocket.client import connect
from flowcoro.websocket.connection import CLOSED, CLOSING, OPEN, WebSocketConnection
from flowcoro.websocket.deflate import Compressor, DeflateParams
from flowcoro.websocket.handshake import (ServerHandshake, accept_key, accept_request,
                                          build_request, check_response, generate_key,
                                          reject_response)

__all__ = [
    "CLOSED", "CLOSING", "OPEN", "Close", "Compressor", "DeflateParams", "FrameBuilder",
    "FrameParser", "Ping", "Pong", "ServerHandshake", "Utf8Validator", "WebSocketClosed",
    "WebSocketConnection", "WebSocketDataError", "WebSocketError", "WebSocketHandshakeError",
    "WebSocketProtocolError", "WebSocketTimeoutError", "WebSocketTooBigError", "accept_key",
    "accept_request", "build_request", "check_response", "close_code_valid", "connect",
    "generate_key", "mask", "reject_response", "utf8_valid",
]
