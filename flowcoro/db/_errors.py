"""Driver errors -> flowcoro.errors, in one place per backend.

Every error a backend raises goes through one of these functions, so the
hierarchy (:class:`DatabaseError` and its subclasses) is the same on every
backend, the driver's exception is chained as ``__cause__``, and the
SQLSTATE (PostgreSQL) or error number (MySQL, SQLite) rides along.
"""
from __future__ import annotations

from flowcoro.errors import (DatabaseConnectionError, DatabaseError, DataError,
                             IntegrityError, InterfaceError, OperationalError,
                             ProgrammingError)

# SQLSTATE class (first two characters) -> our class.  Anything else is an
# OperationalError: the statement was valid but the server could not run it.
_SQLSTATE_CLASS = {
    "08": DatabaseConnectionError,  # connection exception
    "22": DataError,                # data exception
    "23": IntegrityError,           # integrity constraint violation
    "26": ProgrammingError,         # invalid SQL statement name
    "34": ProgrammingError,         # invalid cursor name
    "3D": ProgrammingError,         # invalid catalog (database) name
    "3F": ProgrammingError,         # invalid schema name
    "42": ProgrammingError,         # syntax error or access rule violation
    "0A": ProgrammingError,         # feature not supported
    "25": ProgrammingError,         # invalid transaction state (e.g. 25006 read-only)
    "28": DatabaseConnectionError,  # invalid authorization (at connect)
}
# Whole SQLSTATEs whose meaning is "this session is over".
_SQLSTATE_EXACT = {
    "57P01": DatabaseConnectionError,   # admin_shutdown (pg_terminate_backend, restart)
    "57P02": DatabaseConnectionError,   # crash_shutdown
    "57P03": DatabaseConnectionError,   # cannot_connect_now (starting up)
    "25006": OperationalError,          # read_only_sql_transaction: valid SQL, refused now
}


def class_for_sqlstate(sqlstate: str | None) -> type[DatabaseError]:
    """Our exception class for a SQLSTATE (OperationalError when unknown)."""
    if not sqlstate:
        return OperationalError
    return _SQLSTATE_EXACT.get(sqlstate) or _SQLSTATE_CLASS.get(sqlstate[:2], OperationalError)


def from_psycopg(exc: BaseException) -> DatabaseError:
    """A psycopg exception -> our class (raise it ``from exc``)."""
    import psycopg
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        cls = class_for_sqlstate(sqlstate)
    elif isinstance(exc, psycopg.OperationalError):
        cls = DatabaseConnectionError       # psycopg: libpq failure, no server answer
    elif isinstance(exc, psycopg.InterfaceError):
        cls = InterfaceError
    else:
        cls = OperationalError
    msg = str(exc).strip() or exc.__class__.__name__
    return cls(msg, sqlstate)


# MySQL error numbers that mean the session is gone.
_MYSQL_LOST = {2006, 2013, 2055, 1927, 1053, 2003, 2002, 2012, 2026, 1152, 1184}


def from_mysql(exc: BaseException) -> DatabaseError:
    """An asyncmy (PyMySQL-style) exception -> our class."""
    from asyncmy import errors as me
    errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    msg = str(exc.args[1]) if len(exc.args) > 1 else (str(exc) or exc.__class__.__name__)
    if errno in _MYSQL_LOST:
        cls = DatabaseConnectionError
    elif isinstance(exc, me.IntegrityError):
        cls = IntegrityError
    elif isinstance(exc, me.DataError):
        cls = DataError
    elif isinstance(exc, (me.ProgrammingError, me.NotSupportedError)):
        cls = ProgrammingError
    elif isinstance(exc, me.InterfaceError):
        cls = DatabaseConnectionError
    elif isinstance(exc, (me.OperationalError, me.InternalError)):
        cls = OperationalError
    else:
        cls = OperationalError
    if errno is not None:
        msg = f"({errno}) {msg}"
    return cls(msg, None, errno)


def from_sqlite(exc: BaseException) -> DatabaseError:
    """A sqlite3 exception -> our class."""
    import sqlite3
    errno = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.IntegrityError):
        cls = IntegrityError
    elif isinstance(exc, sqlite3.DataError):
        cls = DataError
    elif isinstance(exc, (sqlite3.ProgrammingError, sqlite3.NotSupportedError)):
        cls = ProgrammingError
    elif isinstance(exc, sqlite3.OperationalError):
        # sqlite3 reports SQL mistakes as OperationalError; sort them out
        # by SQLite's primary result code: 1 = SQLITE_ERROR (bad SQL,
        # unknown table), 5/6 = BUSY/LOCKED, 8 = READONLY, 10 = IOERR...
        cls = ProgrammingError if errno is not None and errno & 0xFF == 1 else OperationalError
    elif isinstance(exc, sqlite3.InterfaceError):
        cls = InterfaceError
    else:
        cls = OperationalError
    return cls(str(exc) or exc.__class__.__name__, None, errno)
