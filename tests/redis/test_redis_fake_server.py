"""Edge cases that a real Redis will not produce on demand, against a tiny fake
server: RESP garbage, unsolicited replies, a server without HELLO (RESP2
fallback), a reply split byte by byte."""
import asyncio

import pytest

from flowcoro import errors
from flowcoro.redis import Redis, open_connection, parse_url


async def fake_server(answer):
    """Serve ``answer(request_bytes) -> reply_bytes`` for every chunk received."""
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                out = answer(data)
                if out is None:
                    writer.close()
                    return
                for i in range(0, len(out), 3):      # dribble: exercise partial replies
                    writer.write(out[i:i + 3])
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_garbage_is_a_protocol_error(run):
    async def main():
        server, port = await fake_server(lambda d: b"?what\r\n")
        r = Redis(port=port, retry_attempts=0)
        with pytest.raises(errors.RedisProtocolError) as exc_info:
            await r.get("x")
        assert isinstance(exc_info.value, ConnectionError)
        await r.aclose()
        server.close()
    run(main())


def test_unsolicited_reply_kills_the_connection(run):
    async def main():
        server, port = await fake_server(lambda d: b"+PONG\r\n+EXTRA\r\n")
        conn = await open_connection(parse_url(f"redis://127.0.0.1:{port}"))
        with pytest.raises(errors.RedisProtocolError, match="unsolicited"):
            await conn.execute("PING")
            await asyncio.sleep(0.05)
            await conn.execute("PING")
        assert conn.is_closing() and "closed" in repr(conn)
        with pytest.raises(errors.RedisConnectionError):
            conn.send(("PING",))
        with pytest.raises(errors.RedisConnectionError):
            conn.send_noreply(("PING",))
        conn.close()
        await conn.wait_closed()
        server.close()
    run(main())


def test_resp3_falls_back_to_resp2_without_hello(run):
    seen = []

    def answer(data):
        seen.append(data)
        if b"HELLO" in data:
            return b"-ERR unknown command 'HELLO', with args beginning with: '3' 'AUTH'\r\n"
        if b"AUTH" in data:
            return b"+OK\r\n"
        return b"$5\r\nhello\r\n" * data.count(b"GET")

    async def main():
        server, port = await fake_server(answer)
        r = Redis.from_url(f"redis://:pw@127.0.0.1:{port}", protocol=3)
        assert await r.get("k") == b"hello"
        conn = await r.connection_pool.shared()
        assert conn.params.protocol == 2
        await r.aclose()
        server.close()
    run(main())
    assert b"AUTH" in seen[1]


def test_handshake_errors(run):
    def answer(data):
        if b"HELLO" in data:
            return b"-WRONGPASS invalid username-password pair\r\n"
        return b"-ERR Client sent AUTH, but no password is set\r\n"

    async def main():
        server, port = await fake_server(answer)
        for url in (f"redis://u:p@127.0.0.1:{port}?protocol=3", f"redis://:p@127.0.0.1:{port}"):
            r = Redis.from_url(url)
            with pytest.raises(errors.RedisAuthenticationError):
                await r.ping()
            await r.aclose()
        server.close()
        server, port = await fake_server(lambda d: None)      # closes at once
        r = Redis(port=port, retry_attempts=1, retry_backoff=0.001, client_name="x")
        with pytest.raises(errors.RedisConnectionError):
            await r.ping()
        await r.aclose()
        server.close()
    run(main())


def test_silent_server_hits_socket_timeout(run):
    calls = []

    def answer(data):
        calls.append(data)
        if len(calls) == 2:
            return b""                  # goes silent for this one
        return b"+PONG\r\n" * data.count(b"PING")

    async def main():
        server, port = await fake_server(answer)
        r = Redis.from_url(f"redis://127.0.0.1:{port}?socket_timeout=0.2")
        assert r.connection_pool.params.socket_timeout == 0.2
        assert await r.ping() is True
        with pytest.raises(errors.RedisTimeoutError, match="socket_timeout"):
            await asyncio.gather(r.ping(), r.ping())
        assert await r.ping() is True                 # a new connection
        # Steady traffic keeps a connection alive however long it lasts.
        for _ in range(5):
            assert await r.ping() is True
            await asyncio.sleep(0.05)
        await r.aclose()
        server.close()
    run(main())
