"""Fixtures for flowcoro.db tests.

``url`` runs a test once per backend: SQLite (a file in tmp_path), the
real PostgreSQL and MariaDB of this machine (``postgres_url`` and
``mysql_url`` from tests/conftest.py: skipped when the server is down,
failed under FLOWCORO_REQUIRE_SERVICES=1).  ``run`` runs a coroutine on a
fresh loop of each kind (FlowCoro's and stdlib asyncio, the reference)
under a hard timeout.  Table names are unique per test (``table``): other
sessions share the databases.
"""
import asyncio
import uuid

import pytest

import flowcoro

LOOPS = {"flowcoro": flowcoro.new_event_loop, "asyncio": asyncio.SelectorEventLoop}


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request):
    """Name of the loop kind the test runs on."""
    return request.param


@pytest.fixture
def run(loop_name):
    """run(coro, timeout=20): run ``coro`` on a new loop of the current kind."""

    def _run(coro, timeout=20.0):
        async def guarded():
            async with asyncio.timeout(timeout):
                return await coro

        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            return runner.run(guarded())

    return _run


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def backend(request):
    """'sqlite', 'postgres' or 'mysql'."""
    return request.param


@pytest.fixture
def url(request, backend, tmp_path):
    """A database URL for ``backend`` (SQLite: a new file under tmp_path)."""
    if backend == "sqlite":
        return f"sqlite://{tmp_path}/test.db"
    return request.getfixturevalue(f"{backend}_url")


@pytest.fixture
def table():
    """A table name no other test (or session) uses."""
    return f"fc_t_{uuid.uuid4().hex[:12]}"
