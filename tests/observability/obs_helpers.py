"""Helpers for the flowcoro.observability tests."""
import asyncio

from flowcoro.http import HttpClient


def run(loop, coro, timeout=20):
    """Run ``coro`` on ``loop`` under a timeout (a hang fails the test)."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def get(port, path, headers=None, method="GET"):
    """One request to 127.0.0.1:port; returns (status, headers, body bytes)."""
    async with HttpClient() as c:
        r = await c.request(method, f"http://127.0.0.1:{port}{path}", headers=headers)
        return r.status, r.headers, r.content
