"""Units without a server: placeholder translation, URLs, error mapping, results."""
import pickle
import sqlite3

import pytest

import flowcoro.db as db
from flowcoro.db import _errors, _sql
from flowcoro.errors import (DatabaseConnectionError, DataError, IntegrityError,
                             InterfaceError, OperationalError, ProgrammingError)


@pytest.mark.parametrize("sql, sqlite", [
    ("SELECT $1", "SELECT ?1"),
    ("SELECT $2, $1, $2", "SELECT ?2, ?1, ?2"),
    ("SELECT '$1', $1", "SELECT '$1', ?1"),
    ("SELECT 'it''s $1', $1", "SELECT 'it''s $1', ?1"),
    ('SELECT "col$1", $1', 'SELECT "col$1", ?1'),
    ("SELECT [a $1], `b $1`, $1", "SELECT [a $1], `b $1`, ?1"),
    ("SELECT $1 -- $2\n, $3", "SELECT ?1 -- $2\n, ?3"),
    ("SELECT /* $9 */ $1", "SELECT /* $9 */ ?1"),
    ("SELECT a$1 FROM t", "SELECT a$1 FROM t"),
    ("SELECT $10", "SELECT ?10"),
])
def test_sqlite_placeholders(sql, sqlite):
    assert _sql.split(sql, "sqlite").sqlite() == sqlite


def test_mysql_placeholders_and_render():
    sql = "SELECT 'a\\'$1', \"$2\", `$1`, $2, $1 # $3\n"
    assert sql == """SELECT 'a\\'$1', "$2", `$1`, $2, $1 # $3\n"""
    t = _sql.split(sql, "mysql")
    assert t.indexes == [1, 0] and t.nparams == 2
    assert t.render(["A", "B"]) == """SELECT 'a\\'$1', "$2", `$1`, B, A # $3\n"""
    assert _sql.split("SELECT 1", "mysql").render([]) == "SELECT 1"
    with pytest.raises(InterfaceError):
        _sql.split("SELECT $0", "mysql")
    # the cache is bounded
    for i in range(_sql._CACHE_MAX + 5):
        _sql.split(f"SELECT {i}", "sqlite")
    assert len(_sql.CACHES["sqlite"]) <= _sql._CACHE_MAX


def test_parse_url():
    assert db.parse_url("sqlite:///tmp/x.db") == ("sqlite", "/tmp/x.db")
    assert db.parse_url("sqlite://rel.db") == ("sqlite", "rel.db")
    assert db.parse_url("sqlite://:memory:") == ("sqlite", ":memory:")
    assert db.parse_url("sqlite:///:memory:") == ("sqlite", ":memory:")
    assert db.parse_url("postgres://u@h/d") == ("postgresql", "postgresql://u@h/d")
    assert db.parse_url("postgresql+psycopg://u@h/d")[0] == "postgresql"
    assert db.parse_url("mariadb://u@h/d") == ("mysql", "mariadb://u@h/d")
    for bad in ("nope", "oracle://x", "sqlite://", 42):
        with pytest.raises(InterfaceError):
            db.parse_url(bad)
    from flowcoro.db.mysql import parse_mysql_url
    kw = parse_mysql_url("mysql://us%40r:p%3Aw@db.example:3307/shop?charset=latin1&connect_timeout=3")
    assert kw == {"host": "db.example", "port": 3307, "user": "us@r", "password": "p:w",
                  "database": "shop", "charset": "latin1", "connect_timeout": 3}


def test_sqlstate_mapping():
    m = _errors.class_for_sqlstate
    assert m("23505") is IntegrityError and m("22012") is DataError
    assert m("42P01") is ProgrammingError and m("08006") is DatabaseConnectionError
    assert m("57P01") is DatabaseConnectionError and m("40001") is OperationalError
    assert m("25006") is OperationalError and m(None) is OperationalError
    assert issubclass(DatabaseConnectionError, OperationalError)
    assert issubclass(DatabaseConnectionError, ConnectionError)


def test_driver_error_mapping():
    import asyncmy.errors as me
    import psycopg
    assert isinstance(_errors.from_mysql(me.OperationalError(2013, "lost")), DatabaseConnectionError)
    e = _errors.from_mysql(me.IntegrityError(1062, "dup"))
    assert isinstance(e, IntegrityError) and e.errno == 1062 and "(1062) dup" in str(e)
    assert isinstance(_errors.from_mysql(me.DataError(1264, "range")), DataError)
    assert isinstance(_errors.from_mysql(me.ProgrammingError(1064, "syntax")), ProgrammingError)
    assert isinstance(_errors.from_mysql(me.InterfaceError(0, "")), DatabaseConnectionError)
    assert isinstance(_errors.from_mysql(me.InternalError(1, "x")), OperationalError)
    assert isinstance(_errors.from_mysql(me.Warning("w")), OperationalError)
    assert isinstance(_errors.from_psycopg(psycopg.OperationalError("down")), DatabaseConnectionError)
    assert isinstance(_errors.from_psycopg(psycopg.InterfaceError("x")), InterfaceError)
    assert isinstance(_errors.from_psycopg(psycopg.DatabaseError("x")), OperationalError)
    assert isinstance(_errors.from_sqlite(sqlite3.DataError("x")), DataError)
    assert isinstance(_errors.from_sqlite(sqlite3.NotSupportedError("x")), ProgrammingError)
    assert isinstance(_errors.from_sqlite(sqlite3.InterfaceError("x")), InterfaceError)
    assert isinstance(_errors.from_sqlite(sqlite3.DatabaseError("x")), OperationalError)
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5
    assert type(_errors.from_sqlite(busy)) is OperationalError
    err = pickle.loads(pickle.dumps(IntegrityError("m", "23505", 7)))
    assert (err.sqlstate, err.errno, str(err)) == ("23505", 7, "m")


def test_public_surface():
    for name in db.__all__:
        obj = getattr(db, name)
        assert getattr(obj, "__doc__", None) or name in ("ISOLATION_LEVELS",), name
    assert db.PoolTimeout is db.PoolTimeout
    r = db.QueryResult([(1,)], ["a"], 1, None)
    assert r.mappings() == [{"a": 1}] and r.scalar() == 1


def test_drivers_are_imported_lazily_with_a_clear_error(monkeypatch):
    import subprocess
    import sys
    code = ("import sys, flowcoro.db; "
            "print(sorted(m for m in ('psycopg', 'asyncmy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from flowcoro.db import mysql, postgres
    monkeypatch.setattr(postgres, "_psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"flowcoro\[postgres\]"):
        postgres._import()
    monkeypatch.setattr(mysql, "_asyncmy", None)
    monkeypatch.setitem(sys.modules, "asyncmy", None)
    with pytest.raises(ImportError, match=r"flowcoro\[mysql\]"):
        mysql._import()
