"""Shared fixtures: real servers started once per session, and clean global state."""

from __future__ import annotations

import logging
import os
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


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """The environment as it was before the test, whatever the test ran in-process.

    The distro writes its defaults and repairs into ``os.environ`` (it must: the SDK
    reads them there). A test that runs it in-process leaves variables that
    ``monkeypatch`` never set, so it never removes them. One such leak, a batch size,
    failed an unrelated test in CI (83c2c7a). Set up before ``monkeypatch`` and torn
    down after it.
    """
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


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
