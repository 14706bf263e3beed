"""CLIENT spans for flowcoro.redis and flowcoro.db.

:func:`instrument_redis` and :func:`instrument_db` make a client start one
OpenTelemetry CLIENT span per Redis command (or pipeline) and per SQL
statement, as a child of the current span (an HTTP request's SERVER span,
a :func:`~flowcoro.observability.traced` block...).  They follow
:meth:`Tracer.start_span`'s rule: inside a request the HTTP server chose
not to trace, no span is made.  Off by default: the hooks are wrappers
set on the instrumented object itself, so an uninstrumented client runs
its own code unchanged (an explicit pipeline tests one attribute).

Attributes follow OpenTelemetry's database conventions: ``db.system``
(``redis``, ``postgresql``, ``mysql``, ``sqlite``), ``db.operation.name``
(the command, or the statement's first keyword), ``db.namespace`` (Redis:
the database number), ``server.address`` / ``server.port`` (Redis), and
``db.query.text`` for SQL (the statement with its ``$n`` placeholders;
parameter values are never recorded, nor are Redis arguments, which may
hold secrets).
"""
from __future__ import annotations

from flowcoro.errors import InvalidArgumentError
from flowcoro.observability.tracing import INSTRUMENTATION_NAME, Tracer

__all__ = ["instrument_redis", "instrument_db"]


class RedisSpans:
    """The spans a traced Redis client makes (internal: set by instrument_redis)."""

    __slots__ = ("tracer", "attrs")

    def __init__(self, tracer, params):
        self.tracer = tracer
        attrs = {"db.system": "redis", "db.namespace": str(params.db)}
        if params.path:
            attrs["server.address"] = params.path
            attrs["network.transport"] = "unix"
        else:
            attrs["server.address"] = params.host
            attrs["server.port"] = params.port
        self.attrs = attrs

    def command(self, args):
        """A span for one command (``args[0]`` is its name)."""
        name = args[0]
        name = (name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)).upper()
        tags = dict(self.attrs)
        tags["db.operation.name"] = name
        return self.tracer.start_span(name, kind="client", tags=tags)

    def pipeline(self, n, transaction):
        """A span for an explicit pipeline of ``n`` commands (MULTI/EXEC
        when ``transaction``)."""
        name = "MULTI" if transaction else "PIPELINE"
        tags = dict(self.attrs)
        tags["db.operation.name"] = name
        tags["db.operation.batch.size"] = n
        return self.tracer.start_span(name, kind="client", tags=tags)


class DbSpans:
    """The spans a traced database connection makes (internal)."""

    __slots__ = ("tracer",)

    def __init__(self, tracer):
        self.tracer = tracer

    def statement(self, conn, sql):
        """A span for one statement run on ``conn``."""
        head = sql.lstrip().split(None, 1)
        op = head[0].upper() if head else ""
        tags = {"db.system": conn.backend, "db.operation.name": op, "db.query.text": sql}
        return self.tracer.start_span(op or conn.backend, kind="client", tags=tags)

    def wrap(self, conn):
        """Route ``conn``'s statements through spans: instance attributes
        shadow the backend's SQL-running methods (``_sql_methods``)."""
        if getattr(conn, "_fc_traced", False):
            return
        conn._fc_traced = True
        for name in type(conn)._sql_methods:
            setattr(conn, name, self._traced(conn, getattr(conn, name)))

    def _traced(self, conn, method):
        async def traced_sql(sql, *args, **kwargs):
            with self.statement(conn, sql):
                return await method(sql, *args, **kwargs)
        return traced_sql


def _tracer(tracer, tracer_provider):
    if tracer is not None:
        return tracer
    return Tracer(INSTRUMENTATION_NAME, tracer_provider)


def instrument_redis(client, *, tracer_provider=None, tracer=None):
    """Trace every command of a :class:`flowcoro.redis.Redis` client: one
    CLIENT span per command named after it (``GET``), one per explicit
    pipeline (``PIPELINE`` or ``MULTI``, with ``db.operation.batch.size``).

    Args:
        client: the Redis client (its pipelines are traced too).
        tracer_provider: an OpenTelemetry TracerProvider (default: the global one).
        tracer: a :class:`Tracer` to use instead.

    Returns the client.
    """
    from flowcoro.redis import Redis
    if not isinstance(client, Redis):
        raise InvalidArgumentError("client", client, "must be a flowcoro.redis.Redis")
    if client._trace is not None:
        return client                   # already traced
    spans = client._trace = RedisSpans(_tracer(tracer, tracer_provider), client._pool.params)
    # Instance attributes shadow the class's hot-path methods: every typed
    # command and execute_command() go through them.
    cmd, blocking = type(client)._cmd, type(client)._blocking

    async def _cmd(args, parse=None):
        with spans.command(args):
            return await cmd(client, args, parse)

    async def _blocking(args, parse=None):
        with spans.command(args):
            return await blocking(client, args, parse)

    client._cmd = _cmd
    client._blocking = _blocking
    return client


def instrument_db(target, *, tracer_provider=None, tracer=None):
    """Trace every statement run through a :class:`flowcoro.db.Pool` (its
    connections, present and future) or one :class:`flowcoro.db.Connection`:
    one CLIENT span per statement, named after its first keyword
    (``SELECT``).  Transaction control shows up where the backend sends it
    as a statement (MySQL's ``START TRANSACTION`` and ``COMMIT``,
    PostgreSQL's ``COMMIT``; PostgreSQL sends ``BEGIN`` with the next
    statement, SQLite's driver runs them itself).  A server-side cursor's
    batches and COPY are not traced.

    Args:
        target: a Pool or a Connection.
        tracer_provider: an OpenTelemetry TracerProvider (default: the global one).
        tracer: a :class:`Tracer` to use instead.

    Returns ``target``.
    """
    from flowcoro.db import Connection, Pool
    spans = DbSpans(_tracer(tracer, tracer_provider))
    if isinstance(target, Pool):
        target._trace = spans
        for conn in target._connections():
            spans.wrap(conn)
    elif isinstance(target, Connection):
        spans.wrap(target)
    else:
        raise InvalidArgumentError("target", target, "must be a flowcoro.db Pool or Connection")
    return target
