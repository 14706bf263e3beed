"""flowcoro.db: one async interface to PostgreSQL, MySQL/MariaDB and SQLite.

Open a connection or a pool from a URL::

    import flowcoro.db as db

    conn = await db.connect("sqlite:///var/app.db")          # or sqlite://:memory:
    pool = await db.create_pool("postgresql://app@db/prod", min_size=2, max_size=20)
    pool = await db.create_pool("mysql://root@127.0.0.1:3306/test")

Both offer ``execute`` (-> :class:`QueryResult`), ``fetch``, ``fetchrow``,
``fetchval``, ``executemany``, ``copy``, ``cursor`` (server-side, for large
results), ``prepare`` and ``transaction()`` (nested = savepoints).
Parameters are written ``$1, $2, ...`` on every backend and passed as a
sequence.  Errors are :class:`flowcoro.errors.DatabaseError` subclasses
(re-exported here).  Drivers: psycopg (PostgreSQL, ``flowcoro[postgres]``),
asyncmy (MySQL, ``flowcoro[mysql]``), the stdlib sqlite3; each is imported
only when its URL is first used.  Full guide: docs/db.md.
"""
from __future__ import annotations

from typing import Any

from flowcoro.db._base import (ISOLATION_LEVELS, Connection, Cursor, PreparedStatement,
                               QueryResult, Transaction)
from flowcoro.db.pool import Pool, PoolTimeout
from flowcoro.errors import (DatabaseConnectionError, DatabaseError, DataError,
                             IntegrityError, InterfaceError, OperationalError,
                             PoolClosedError, ProgrammingError)

__all__ = ["connect", "create_pool", "parse_url", "Connection", "Pool", "QueryResult",
           "Transaction", "Cursor", "PreparedStatement", "ISOLATION_LEVELS",
           "DatabaseError", "DatabaseConnectionError", "DataError", "IntegrityError",
           "InterfaceError", "OperationalError", "ProgrammingError", "PoolTimeout",
           "PoolClosedError"]

_SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql",
            "mariadb": "mysql", "sqlite": "sqlite"}


def parse_url(url: str) -> tuple[str, str]:
    """``url`` -> (backend, what the backend's connect takes).

    * ``sqlite:///abs/path.db`` (absolute), ``sqlite://rel/path.db``
      (relative to the working directory), ``sqlite://:memory:``; a
      ``sqlite://file:...`` URI is passed to SQLite as a URI.
    * ``postgresql://`` / ``postgres://``: passed to libpq as is.
    * ``mysql://`` / ``mariadb://``: ``user:password@host:port/database``,
      query options go to asyncmy (``?charset=utf8mb4``).

    Raises:
        InterfaceError: an unknown scheme or an empty SQLite path.
    """
    if not isinstance(url, str) or "://" not in url:
        raise InterfaceError(f"not a database URL: {url!r} (expected scheme://...)")
    scheme, rest = url.split("://", 1)
    backend = _SCHEMES.get(scheme.lower().split("+", 1)[0])
    if backend is None:
        raise InterfaceError(f"unknown database scheme {scheme!r} in {url!r}; expected one of "
                             f"{sorted(_SCHEMES)}")
    if backend == "sqlite":
        if not rest:
            raise InterfaceError(f"{url!r}: no SQLite path (use sqlite://:memory: "
                                 f"or sqlite:///path/to/file.db)")
        if rest == "/:memory:":
            rest = ":memory:"
        return backend, rest
    if backend == "postgresql" and scheme.lower() != "postgresql":
        url = "postgresql://" + rest
    return backend, url


async def connect(url: str, **options: Any) -> Connection:
    """Open one connection.

    Args:
        url: see :func:`parse_url`.
        options: backend options: PostgreSQL ``binary``,
            ``statement_cache_size``, ``connect_timeout`` and libpq
            parameters; MySQL ``connect_timeout`` and asyncmy.connect
            keywords; SQLite ``timeout`` (busy wait, seconds) and ``wal``.

    Raises:
        DatabaseConnectionError: the server cannot be reached or refused us.
        ImportError: the backend's driver is not installed (names the extra).
    """
    backend, target = parse_url(url)
    if backend == "postgresql":
        from flowcoro.db.postgres import PostgresConnection
        return await PostgresConnection.connect(target, **options)
    if backend == "mysql":
        from flowcoro.db.mysql import MySQLConnection
        return await MySQLConnection.connect(target, **options)
    from flowcoro.db.sqlite import SQLiteConnection
    return await SQLiteConnection.connect(target, **options)


def create_pool(url: str, min_size: int = 1, max_size: int = 10, *,
                acquire_timeout: float | None = 30.0, max_idle: float = 300.0,
                max_lifetime: float = 3600.0, health_check_after: float = 30.0,
                pipeline: int = 1, **options: Any) -> Pool:
    """A :class:`Pool` of connections to ``url``; ``await`` it (or use
    ``async with``) to open its ``min_size`` connections.

    ``options`` go to :func:`connect` for every connection.  A pool on
    ``sqlite://:memory:`` holds one connection (each in-memory connection
    is a database of its own).  ``pipeline`` applies to PostgreSQL only.
    See :class:`Pool` for the other arguments.
    """
    backend, target = parse_url(url)
    if backend == "sqlite" and target == ":memory:":
        min_size, max_size = min(min_size, 1), 1

    async def opener() -> Connection:
        """Open one connection of the pool."""
        return await connect(url, **options)

    return Pool(opener, min_size=min_size, max_size=max_size, acquire_timeout=acquire_timeout,
                max_idle=max_idle, max_lifetime=max_lifetime,
                health_check_after=health_check_after, backend=backend,
                pipeline=pipeline if backend == "postgresql" else 1)
