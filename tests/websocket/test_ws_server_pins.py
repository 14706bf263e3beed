"""Server behaviour found while testing the WebSocket server side (once
pinned as strict xfails, now fixed): after-middleware sees upgrades,
stop(grace) aborts WebSockets that ignore the close, and the ASGI scope's
scheme follows TLS."""
import asyncio

import pytest

from flowcoro.http import HttpServer

import helpers

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("kind", ["epoll", "asyncio"])
def test_after_middleware_sees_websocket_upgrades(kind):
    seen = []

    async def main():
        app = HttpServer()

        @app.middleware(kind="after")
        async def access_log(request, response):
            seen.append((request.path, response.status))
            return response

        @app.websocket("/ws")
        async def echo(ws):
            async for m in ws:
                await ws.send(m)

        await app.listen("127.0.0.1", 0)
        try:
            async with ws_connect(f"ws://127.0.0.1:{app.port}/ws", proxy=None) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            for _ in range(100):                # the session ends after the close
                if seen:
                    break
                await asyncio.sleep(0.01)
        finally:
            await app.stop(grace=1)

    helpers.run_with(kind, main())
    assert seen == [("/ws", 101)]


@pytest.mark.parametrize("kind", ["epoll", "asyncio"])
def test_stop_aborts_websockets_that_ignore_the_close_past_grace(kind):
    opened = []

    async def main():
        app = HttpServer()

        @app.websocket("/ws", ping_interval=None)
        async def hold(ws):
            opened.append(ws)
            async for _ in ws:
                pass

        await app.listen("127.0.0.1", 0)
        # A client that completes the handshake, then never reads or answers.
        r, w = await asyncio.open_connection("127.0.0.1", app.port)
        w.write(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert (await r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
        while not opened:
            await asyncio.sleep(0.01)
        try:
            await app.stop(grace=0.5)
            return opened[0].closed
        finally:
            opened[0].abort()
            w.close()

    assert helpers.run_with(kind, main()) is True


def test_asgi_websocket_scope_scheme_is_wss_over_tls():
    import ssl

    trustme = pytest.importorskip("trustme")
    from flowcoro.http.asgi import ASGIServer

    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            seen.append(scope["scheme"])
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})

    async def main():
        ca = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        srv = ASGIServer(app, lifespan="off")
        await srv.listen("127.0.0.1", 0, ssl=server_ctx)
        try:
            async with ws_connect(f"wss://127.0.0.1:{srv.port}/", ssl=client_ctx,
                                  proxy=None) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
        finally:
            await srv.stop(grace=1)

    helpers.run_with("epoll", main())
    assert seen == ["wss"]
