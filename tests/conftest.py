"""Shared fixtures: real servers started once per session, and clean global state."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from otel_excellence import _diagnostics as _log
from tests.support.services import Postgres, Redis, postgres_server, redis_server


@pytest.fixture(autouse=True)
def _internal_errors_raise() -> Iterator[None]:
    """Inside our tests an internal error is a bug: re-raise instead of swallowing."""
    _log.raise_internal_errors = True
    _log.reset_once_keys()
    yield
    _log.raise_internal_errors = False


@pytest.fixture
def warnings_seen(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The distro's own diagnostics (its logger does not propagate), WARNING and up."""
    caplog.set_level(logging.WARNING)
    ours = logging.getLogger("otel_excellence")
    ours.addHandler(caplog.handler)
    yield caplog
    ours.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[Redis]:
    with redis_server() as server:
        yield server
