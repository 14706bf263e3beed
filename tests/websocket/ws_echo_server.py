"""A minimal WebSocket server for the tests, the Autobahn runs and the
benchmarks: asyncio.Protocol + flowcoro.http.RequestParser +
flowcoro.websocket.accept_request + WebSocketConnection.  (The real server
is flowcoro.http's; this one exists so the WebSocket layer can be tested
alone.)

    python tests/websocket/ws_echo_server.py PORT     # echo server (Autobahn)
"""
import asyncio
import sys

from flowcoro.errors import HttpParseError, WebSocketClosed, WebSocketHandshakeError
from flowcoro._core.httpparser import RequestHead, RequestParser
from flowcoro.websocket import WebSocketConnection, accept_request, reject_response


class _Upgrade(asyncio.Protocol):
    def __init__(self, handler, options, accept_options, connections):
        self.handler = handler
        self.options = options
        self.accept_options = accept_options
        self.connections = connections
        self.parser = RequestParser()
        self.transport = None
        self.extra = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            events = self.parser.feed(data)
        except HttpParseError as exc:
            self.transport.write(b"HTTP/1.1 %d Bad Request\r\nConnection: close\r\n"
                                 b"Content-Length: 0\r\n\r\n" % exc.status)
            self.transport.close()
            return
        for ev in events:
            if type(ev) is RequestHead:
                self.on_head(ev)
                return

    def on_head(self, head):
        try:
            hs = accept_request(head, **self.accept_options)
        except WebSocketHandshakeError as exc:
            self.transport.write(reject_response(exc))
            self.transport.close()
            return
        self.transport.write(hs.response())
        rest = self.parser.detach() if self.parser.paused else b""
        ws = WebSocketConnection(self.transport, "server", subprotocol=hs.subprotocol,
                                 deflate=hs.deflate, initial_data=rest, handshake=hs,
                                 **self.options)
        self.connections.add(ws)
        if self.handler is None:
            # callback mode: echo from the protocol callback, no task
            ws.on_message = ws.send_nowait
            done = asyncio.get_running_loop().create_task(ws.wait_closed())
            done.add_done_callback(lambda t: self.connections.discard(ws))
            return
        task = asyncio.get_running_loop().create_task(self._run(ws))
        task.add_done_callback(lambda t: self.connections.discard(ws))

    async def _run(self, ws):
        try:
            await self.handler(ws)
        except WebSocketClosed:
            pass
        finally:
            await ws.close()


async def echo(ws):
    """Send every message back."""
    async for msg in ws:
        await ws.send(msg)


async def serve(handler, host="127.0.0.1", port=0, accept_options=None, **options):
    """Start a server; returns (asyncio server, port, set of live connections).

    ``handler=None``: echo in callback mode (``on_message=ws.send_nowait``)."""
    loop = asyncio.get_running_loop()
    conns = set()
    server = await loop.create_server(
        lambda: _Upgrade(handler, options, accept_options or {}, conns), host, port)
    return server, server.sockets[0].getsockname()[1], conns


async def _main(port):
    server, port, _ = await serve(echo, port=port, max_message=2 ** 25, ping_interval=None)
    print(f"listening on ws://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    import flowcoro
    flowcoro.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 9002))
