"""Fixtures for FlowCoro's own test suite.

``loop`` runs a test three times, uvloop style: on FlowCoro with the epoll
reactor, on FlowCoro with the poll reactor (``FLOWCORO_BACKEND=poll`` set
while the loop is created), and on the stdlib asyncio loop, which is the
reference behaviour.  The loop is not installed as the current loop, so
code that silently relies on an implicit global loop fails loudly.

Service fixtures (``postgres_url``, ``redis_url``, ``mysql_url``) skip a test
when the service is unreachable, or fail it when FLOWCORO_REQUIRE_SERVICES=1.
"""
import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import helpers  # noqa: E402

#: Per-test limit for tests without their own ``timeout`` mark (seconds):
#: a hung loop must fail its test, not the whole run.
DEFAULT_TIMEOUT = 60


def pytest_collection_modifyitems(config, items):
    """Give every core test a default timeout well under the suite's budget."""
    here = os.path.dirname(__file__)
    for item in items:
        if os.path.dirname(str(item.fspath)) != here:
            continue            # tests/net/ and others set their own
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.fixture(params=helpers.LOOP_KINDS)
def loop_kind(request):
    """'epoll', 'poll' or 'asyncio' (the reference)."""
    return request.param


@pytest.fixture
def loop(loop_kind):
    """A fresh loop of each kind; torn down like asyncio.run() does."""
    lp = helpers.make_loop(loop_kind)
    asyncio.set_event_loop(None)
    try:
        yield lp
    finally:
        helpers.close_loop(lp)
        asyncio.set_event_loop(None)


@pytest.fixture(params=helpers.FLOWCORO_KINDS)
def flowcoro_loop(request):
    """A FlowCoro loop of each backend (tests of FlowCoro-only internals)."""
    lp = helpers.make_loop(request.param)
    try:
        yield lp
    finally:
        helpers.close_loop(lp)


@pytest.fixture
def postgres_url():
    """URL of the test PostgreSQL (FLOWCORO_TEST_POSTGRES_URL)."""
    return helpers.require_service("postgres")


@pytest.fixture
def redis_url():
    """URL of the test Redis (FLOWCORO_TEST_REDIS_URL)."""
    return helpers.require_service("redis")


@pytest.fixture
def mysql_url():
    """URL of the test MySQL/MariaDB (FLOWCORO_TEST_MYSQL_URL)."""
    return helpers.require_service("mysql")
