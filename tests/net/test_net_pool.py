"""flowcoro.net.ConnectionPool against a real echo server, on every loop."""
import asyncio

import pytest

from flowcoro.errors import (InvalidArgumentError, PoolClosedError, PoolError,
                             PoolTimeoutError)
from flowcoro.net import ConnectionPool, PoolStats, TcpClient


async def roundtrip(conn, payload=b"ping\n"):
    conn.write(payload)
    await conn.drain()
    return await conn.readline()


def test_acquire_release_reuses_connection(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port, max_size=2) as pool:
                conn = await pool.acquire()
                assert isinstance(conn, TcpClient)
                assert await roundtrip(conn) == b"ping\n"
                assert pool.stats().in_use == 1
                pool.release(conn)
                async with pool.acquire() as again:
                    assert again is conn
                    assert await roundtrip(again, b"second\n") == b"second\n"
                st = pool.stats()
                assert isinstance(st, PoolStats)
                assert (st.size, st.idle, st.in_use, st.created, st.acquired) == (1, 1, 0, 1, 2)
            assert conn.is_closing()                 # closed with the pool

    run(main())


def test_max_size_and_acquire_timeout(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            pool = ConnectionPool(host="127.0.0.1", port=server.port, max_size=2,
                                  acquire_timeout=0.05)
            a = await pool.acquire()
            b = await pool.acquire()
            assert a is not b
            with pytest.raises(PoolTimeoutError) as ei:
                await pool.acquire()
            assert isinstance(ei.value, TimeoutError)
            with pytest.raises(PoolTimeoutError):
                await pool.acquire(timeout=0)
            st = pool.stats()
            assert (st.size, st.in_use, st.waiting, st.timeouts, st.created) == (2, 2, 0, 2, 2)
            pool.release(a)
            assert await pool.acquire(timeout=0) is a
            pool.release(a)
            pool.release(b)
            pool.close()
            await pool.wait_closed()

    run(main())


def test_waiters_get_released_connections_in_order(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port, max_size=1) as pool:
                conn = await pool.acquire()
                order = []

                async def user(i):
                    async with pool.acquire() as c:
                        order.append(i)
                        assert c is conn
                        await asyncio.sleep(0)

                tasks = [asyncio.ensure_future(user(i)) for i in range(4)]
                await asyncio.sleep(0.01)
                assert pool.stats().waiting == 4
                pool.release(conn)
                await asyncio.gather(*tasks)
                assert order == [0, 1, 2, 3]
                assert pool.stats().created == 1

    run(main())


def test_health_check_discards_unhealthy(run, serving, echo):
    async def main():
        verdicts = [False, RuntimeError("check blew up"), True]
        checked = []

        async def check(conn):
            checked.append(conn)
            v = verdicts.pop(0)
            if isinstance(v, Exception):
                raise v
            return v

        async with serving(echo) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port, health_check=check) as pool:
                first = await pool.acquire()           # new: not checked
                assert checked == []
                pool.release(first)
                second = await pool.acquire()          # idle one fails -> new one
                assert second is not first and first.is_closing()
                assert checked == [first]
                pool.release(second)
                third = await pool.acquire()           # check raises -> new one
                assert third is not second and second.is_closing()
                pool.release(third)
                fourth = await pool.acquire()          # check passes -> reused
                assert fourth is third
                assert await roundtrip(fourth) == b"ping\n"
                pool.release(fourth)
                st = pool.stats()
                assert (st.created, st.discarded, st.size) == (3, 2, 1)

    run(main())


def test_idle_connections_expire(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port,
                                      idle_timeout=0.2) as pool:
                a = await pool.acquire()
                b = await pool.acquire()
                pool.release(a)
                await asyncio.sleep(0.12)
                pool.release(b)
                await asyncio.sleep(0.12)           # a expired (0.24 s), b not yet (0.12 s)
                st = pool.stats()
                assert (st.idle, st.size, st.discarded) == (1, 1, 1)
                assert a.is_closing() and not b.is_closing()
                await asyncio.sleep(0.15)
                assert pool.stats().idle == 0 and pool.stats().size == 0
                assert b.is_closing()
                c = await pool.acquire()            # a fresh one
                assert c is not a and c is not b
                pool.release(c)

    run(main())


def test_broken_connections_are_never_handed_out(run, serving):
    async def main():
        async def one_reply(conn):
            conn.write(await conn.readline())       # then the server hangs up

        async with serving(one_reply) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port) as pool:
                conn = await pool.acquire()
                assert await roundtrip(conn) == b"ping\n"
                pool.release(conn)                   # looks fine at release...
                await asyncio.sleep(0.05)            # ...then the peer closes it
                fresh = await pool.acquire()
                assert fresh is not conn and conn.is_closing()
                # released with unread bytes: discarded too
                fresh.write(b"x\n")
                await fresh.drain()
                await asyncio.sleep(0.05)
                pool.release(fresh)
                assert fresh.is_closing()
                # released after close by the user: discarded
                other = await pool.acquire()
                other.close()
                pool.release(other)
                st = pool.stats()
                assert (st.discarded, st.size, st.idle) == (3, 0, 0)

    run(main())


def test_exception_in_async_with_discards(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port) as pool:
                with pytest.raises(KeyError):
                    async with pool.acquire() as conn:
                        raise KeyError("oops")
                assert conn.is_closing()
                st = pool.stats()
                assert (st.size, st.in_use, st.discarded) == (0, 0, 1)

    run(main())


def test_cancel_while_waiting_leaks_no_slot(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with ConnectionPool(host="127.0.0.1", port=server.port, max_size=1) as pool:
                conn = await pool.acquire()
                waiter = asyncio.ensure_future(pool.acquire())
                await asyncio.sleep(0.01)
                waiter.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiter
                assert pool.stats().waiting == 0
                # the race: the connection is handed to a waiter that is
                # cancelled before it runs; it must come back to the pool
                waiter = asyncio.ensure_future(pool.acquire())
                await asyncio.sleep(0.01)
                pool.release(conn)
                waiter.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiter
                st = pool.stats()
                assert (st.size, st.idle, st.in_use, st.waiting) == (1, 1, 0, 0)
                assert await pool.acquire(timeout=0) is conn
                pool.release(conn)

    run(main())


def test_cancel_while_connecting_frees_slot(run):
    async def main():
        gate = asyncio.Event()
        made = []

        async def factory():
            await gate.wait()
            made.append(1)
            return _Dummy()

        pool = ConnectionPool(factory, max_size=1)
        task = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        assert pool.stats().size == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().size == 0
        gate.set()
        conn = await pool.acquire(timeout=1)
        assert isinstance(conn, _Dummy) and made == [1]
        pool.release(conn)
        pool.close()

    run(main())


def test_acquire_timeout_while_connecting_frees_slot(run):
    async def main():
        async def slow_factory():
            await asyncio.sleep(10)

        pool = ConnectionPool(slow_factory, max_size=1, acquire_timeout=0.02)
        with pytest.raises(PoolTimeoutError):
            await pool.acquire()
        st = pool.stats()
        assert (st.size, st.timeouts) == (0, 1)

    run(main())


def test_factory_error_frees_slot_and_propagates(run):
    async def main():
        calls = []

        async def factory():
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionRefusedError("nobody home")
            return _Dummy()

        pool = ConnectionPool(factory, max_size=1)
        with pytest.raises(ConnectionRefusedError):
            await pool.acquire()
        assert pool.stats().size == 0
        conn = await pool.acquire()
        pool.release(conn)
        # a factory's own TimeoutError is not a pool timeout
        async def timing_out():
            raise TimeoutError("connect timed out")

        pool2 = ConnectionPool(timing_out, acquire_timeout=5)
        with pytest.raises(TimeoutError) as ei:
            await pool2.acquire()
        assert not isinstance(ei.value, PoolTimeoutError)

    run(main())


def test_closed_pool(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            pool = ConnectionPool(host="127.0.0.1", port=server.port, max_size=1)
            conn = await pool.acquire()
            waiter = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0.01)
            pool.close()
            assert pool.closed
            with pytest.raises(PoolClosedError):
                await waiter
            with pytest.raises(PoolClosedError):
                await pool.acquire()
            assert not conn.is_closing()             # in use: closed on release
            pool.release(conn)
            assert conn.is_closing()
            assert pool.stats().size == 0
            pool.close()                             # idempotent
            await pool.wait_closed()

    run(main())


def test_release_errors_and_bad_arguments(run):
    async def main():
        async def factory():
            return _Dummy()

        pool = ConnectionPool(factory)
        conn = await pool.acquire()
        pool.release(conn)
        with pytest.raises(PoolError):
            pool.release(conn)                       # twice
        with pytest.raises(PoolError):
            pool.release(_Dummy())                   # a stranger
        with pytest.raises(InvalidArgumentError):
            pool.acquire(timeout=-1)
        bad = [
            dict(),                                          # neither factory nor host/port
            dict(host="h"),                                  # port missing
            dict(factory=factory, host="h", port=1),         # both
            dict(factory="nope"),
            dict(factory=factory, max_size=0),
            dict(factory=factory, max_size=1.5),
            dict(factory=factory, idle_timeout=0),
            dict(factory=factory, acquire_timeout=-1),
            dict(factory=factory, health_check=42),
        ]
        for kwargs in bad:
            with pytest.raises(InvalidArgumentError):
                ConnectionPool(**kwargs)
        pool.close()

    run(main())


class _Dummy:
    """A connection stand-in for factory tests (the pool needs only close())."""

    closed = False

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed
