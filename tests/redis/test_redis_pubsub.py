"""Pub/sub: subscribe, patterns, handlers, the async iterator, resubscription."""
import asyncio

import pytest

from flowcoro import errors
from flowcoro.redis import from_url


@pytest.mark.parametrize("protocol", [2, 3])
def test_subscribe_publish_listen(run, r_url, prefix, protocol):
    ch = prefix + "news"

    async def main():
        async with from_url(r_url, protocol=protocol) as r:
            async with r.pubsub() as ps:
                assert not ps.subscribed
                await ps.subscribe(ch)
                assert ps.subscribed and "channels=1" in repr(ps)
                msg = await ps.get_message(timeout=1)
                assert msg == {"type": "subscribe", "pattern": None,
                               "channel": ch.encode(), "data": 1}
                assert await ps.get_message() is None            # timeout=0: no wait
                assert await ps.get_message(timeout=0.01) is None
                # subscribe() returned after the confirmation: nothing is missed.
                assert await r.publish(ch, "one") == 1
                assert await ps.get_message(timeout=1) == {
                    "type": "message", "pattern": None, "channel": ch.encode(), "data": b"one"}
                await ps.psubscribe(prefix + "n*")
                assert (await ps.get_message(timeout=1))["type"] == "psubscribe"
                await r.publish(ch, "two")
                got = [await ps.get_message(timeout=1), await ps.get_message(timeout=1)]
                assert {m["type"] for m in got} == {"message", "pmessage"}
                pm = [m for m in got if m["type"] == "pmessage"][0]
                assert pm["pattern"] == (prefix + "n*").encode() and pm["data"] == b"two"
                await ps.ping()
                assert (await ps.get_message(timeout=1))["type"] == "pong"
                await ps.unsubscribe()
                assert (await ps.get_message(timeout=1))["type"] == "unsubscribe"
                await ps.punsubscribe()
                assert (await ps.get_message(timeout=1))["type"] == "punsubscribe"
                assert not ps.subscribed
                await ps.ping()                                  # not subscribed: plain PONG
                assert (await ps.get_message(timeout=1))["type"] == "pong"
                assert [m async for m in ps.listen()] == []      # nothing subscribed: ends
            # Closed: the connection was discarded, not pooled.
            with pytest.raises(errors.InvalidStateError):
                await ps.subscribe("x")
            assert await ps.get_message(timeout=1) is None
            assert r.connection_pool.stats().in_use == 0
    run(main())


def test_iterator_handlers_and_roadmap_shortcut(run, r_url, prefix):
    async def main():
        async with from_url(r_url, decode_responses=True) as r:
            seen = []

            async def async_handler(msg):
                seen.append(("a", msg["data"]))

            ps = await r.subscribe(prefix + "plain", **{prefix.replace(":", "_") + "h": seen.append})
            ps.ignore_subscribe_messages = True
            await ps.psubscribe(**{prefix.replace(":", "_") + "p*": async_handler})
            await r.publish(prefix.replace(":", "_") + "h", "to-handler")
            await r.publish(prefix.replace(":", "_") + "px", "to-async")
            for i in range(3):
                await r.publish(prefix + "plain", str(i))
            out = []
            async for msg in ps:
                out.append(msg["data"])
                if len(out) == 3:
                    break
            assert out == ["0", "1", "2"]
            assert seen[0]["data"] == "to-handler" and seen[1] == ("a", "to-async")
            # Bytes that are not UTF-8 (decode_responses=True): get_message
            # raises the decode error and the subscription goes on.
            await r.publish(prefix + "plain", b"\xff")
            await r.publish(prefix + "plain", "after")
            with pytest.raises(UnicodeDecodeError):
                await ps.get_message(timeout=1)
            assert (await ps.get_message(timeout=1))["data"] == "after"
            await ps.unsubscribe(prefix + "plain")
            await ps.aclose()
            await ps.aclose()                   # idempotent
            # Several concurrent readers: each message goes to exactly one.
            ps3 = await r.subscribe(prefix + "multi")
            readers = [asyncio.ensure_future(ps3.get_message(ignore_subscribe_messages=True,
                                                             timeout=1)) for _ in range(3)]
            await asyncio.sleep(0.01)
            await r.publish(prefix + "multi", "m1")
            await r.publish(prefix + "multi", "m2")
            got = [m for m in await asyncio.gather(*readers) if m]
            while len(got) < 2:
                m = await ps3.get_message(timeout=1)
                if m and m["type"] == "message":
                    got.append(m)
            assert sorted(m["data"] for m in got) == ["m1", "m2"]
            await ps3.aclose()
            # A getter blocked in get_message is woken by aclose.
            ps2 = r.pubsub()
            await ps2.subscribe(prefix + "z")
            waiter = asyncio.ensure_future(ps2.get_message(ignore_subscribe_messages=True,
                                                           timeout=None))
            await asyncio.sleep(0.01)
            await ps2.aclose()
            assert await waiter is None
    run(main())


def test_resubscribes_after_reconnect(run, private_redis):
    srv = private_redis

    async def main():
        r = from_url(srv.url, retry_backoff=0.01, retry_backoff_max=0.05)
        ps = r.pubsub(ignore_subscribe_messages=True)
        try:
            await ps.subscribe("alpha")
            await ps.psubscribe("be*")
            srv.restart()
            # The listener keeps going: after the restart it is subscribed again.
            for _ in range(200):
                await asyncio.sleep(0.02)
                if ps.reconnects and await r.execute("PUBSUB", "NUMSUB", "alpha") == [b"alpha", 1] \
                        and await r.pubsub_numpat() == 1:
                    break
            else:
                pytest.fail("no resubscription")
            await r.publish("alpha", "a")
            await r.publish("beta", "b")
            got = [await ps.get_message(timeout=2), await ps.get_message(timeout=2)]
            assert [m["data"] for m in got] == [b"a", b"b"]
            assert ps.reconnects == 1
            # Killed by the server (CLIENT KILL): resubscribed again.
            await r.execute("CLIENT", "KILL", "TYPE", "pubsub")
            for _ in range(200):
                await asyncio.sleep(0.02)
                if ps.reconnects == 2 and await r.pubsub_numpat() == 1:
                    break
            await r.publish("beta", "c")
            assert (await ps.get_message(timeout=2))["data"] == b"c"
            # Server down for a while: reconnect loop waits, aclose stops it.
            srv.kill()
            await asyncio.sleep(0.1)
            await ps.aclose()
        finally:
            await ps.aclose()
            await r.aclose()
    run(main())
