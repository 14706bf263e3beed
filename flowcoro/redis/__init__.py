"""flowcoro.redis: an asyncio Redis client on hiredis with automatic pipelining.

Public API (see docs/redis.md):
    Redis           the client: redis-py-compatible command methods, ``from_url``,
                    ``execute_command`` / ``execute``, ``pipeline``, ``pubsub``,
                    ``register_script``, ``scan_iter`` & co
    Pipeline        explicit pipelines and MULTI/EXEC transactions with WATCH
    PubSub          subscriptions as an async iterator, restored after reconnects
    Script          EVALSHA with automatic loading
    ConnectionPool  the shared auto-pipelined connection plus a bounded pool of
                    dedicated ones (blocking commands, WATCH, pub/sub)
    Connection, ConnectionParams, parse_url, open_connection   the layer below

Errors live in :mod:`flowcoro.errors` (``RedisError`` and subclasses; a
lost connection raises ``RedisConnectionError``, a builtin ConnectionError).

Needs the ``hiredis`` package (``pip install 'flowcoro[redis]'``); importing
``flowcoro`` alone does not.
"""
from flowcoro.redis.connection import (Connection, ConnectionParams, open_connection,
                                       parse_url)
from flowcoro.redis.client import Redis, Script
from flowcoro.redis.pipeline import Pipeline
from flowcoro.redis.pool import ConnectionPool
from flowcoro.redis.pubsub import PubSub

from_url = Redis.from_url

__all__ = ["Connection", "ConnectionParams", "ConnectionPool", "Pipeline", "PubSub", "Redis",
           "Script", "from_url", "open_connection", "parse_url"]
