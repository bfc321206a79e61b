"""Real servers for the tests, started on loopback ports from the test setup.

PostgreSQL and Redis come from Debian packages (``make test`` installs them); the
Collector is built by ``make collector``, Prometheus 3 and promtool by ``make prometheus``.
Under ``CI=true`` a missing one fails the test that needs it; elsewhere it skips with the
command that would provide it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str, how: str) -> NoReturn:
    """A service a test needs is absent: fail under CI, skip elsewhere."""
    message = f"{what} is not available ({how})"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def find_tool(name: str, *patterns: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


def _as_postgres_user() -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, so drop to the Debian
    # package's `postgres` account there.
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing("the postgres system user", "install the postgresql package")
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    port: int
    url: str  # SQLAlchemy URL (psycopg 3)
    dsn: str  # libpq DSN


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    initdb = find_tool("initdb", "/usr/lib/postgresql/*/bin/initdb")
    pg_ctl = find_tool("pg_ctl", "/usr/lib/postgresql/*/bin/pg_ctl")
    if initdb is None or pg_ctl is None:
        missing("PostgreSQL (initdb, pg_ctl)", "`make test` installs the postgresql package")
    prefix = _as_postgres_user()
    base = tempfile.mkdtemp(prefix="otel-excellence-pg-")
    os.chmod(base, 0o755)  # noqa: S103 - the postgres user must reach its data dir
    data = os.path.join(base, "data")
    os.mkdir(data)
    if prefix:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        [*prefix, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = os.path.join(base, "server.log")
    subprocess.run(
        [*prefix, pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield Postgres(
            port=port,
            url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            dsn=f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
        )
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Redis:
    port: int
    url: str


@contextmanager
def redis_server() -> Iterator[Redis]:
    binary = find_tool("redis-server")
    if binary is None:
        missing("redis-server", "`make test` installs the redis-server package")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port):
            raise RuntimeError("redis-server did not start")
        yield Redis(port=port, url=f"redis://127.0.0.1:{port}/0")
    finally:
        process.terminate()
        process.wait(10)


def collector_binary() -> str:
    """The otelcol-excellence binary built by `make collector` (cached by manifest hash)."""
    explicit = os.environ.get("OTELCOL_BIN")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    manifest = REPO / "collector-config" / "builder-config.yaml"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = cache / "otel-excellence" / f"otelcol-{digest}" / "otelcol-excellence"
    if not os.access(path, os.X_OK):
        missing(f"the Collector binary {path}", "run `make collector`")
    return str(path)


def wait_until(condition: object, timeout: float = 20.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return bool(condition())  # type: ignore[operator]


PROMETHEUS_BUILD = REPO / "scripts" / "build-prometheus.sh"


def prometheus_version() -> str:
    """The Prometheus release the repository builds (one line of scripts/build-prometheus.sh)."""
    match = re.search(r"^version=(\S+)", PROMETHEUS_BUILD.read_text(), re.MULTILINE)
    assert match, f"no version= line in {PROMETHEUS_BUILD}"
    return match.group(1)


def prometheus_tool(name: str) -> str:
    """``prometheus`` or ``promtool`` 3.x from `make prometheus` (PROMETHEUS_BIN_DIR, or the
    cache directory the build script uses); never Debian's 2.42, whose range windows differ."""
    directories = [os.environ.get("PROMETHEUS_BIN_DIR", "")]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    directories.append(str(cache / "otel-excellence" / f"prometheus-{prometheus_version()}"))
    for directory in filter(None, directories):
        path = Path(directory) / name
        if os.access(path, os.X_OK):
            return str(path)
    missing(f"{name} {prometheus_version()}", "run `make prometheus`")


# The command-line flags docker-compose.yml and `make stack` give Prometheus too
# (tests/test_compose.py keeps them equal): the gateway's remote write, and exemplars,
# which are silently dropped without the feature flag.
PROMETHEUS_FLAGS = ("--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage")


@dataclass
class Prometheus:
    port: int
    url: str

    @property
    def remote_write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the result vector's samples."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310 - loopback
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the response's ``data``."""
        address = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(address, timeout=30) as response:  # noqa: S310 - loopback
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params} failed: {body}")
        return body["data"]

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The first non-empty result of ``promql`` within ``timeout``, else []."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


@contextmanager
def prometheus_server() -> Iterator[Prometheus]:
    """Prometheus 3 with the shipped config (and so its rule files), flags as in compose."""
    binary = prometheus_tool("prometheus")
    base = tempfile.mkdtemp(prefix="otel-excellence-prom-")
    config = str(REPO / "deploy" / "prometheus.yml")  # the file docker-compose.yml uses
    port = free_port()
    log = open(os.path.join(base, "prometheus.log"), "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={base}/data",
            f"--web.listen-address=127.0.0.1:{port}",
            *PROMETHEUS_FLAGS,
        ],
        stdout=log,
        stderr=log,
    )
    server = Prometheus(port, f"http://127.0.0.1:{port}")
    try:
        if not wait_until(lambda: _ready(server), timeout=60):
            raise RuntimeError(f"Prometheus did not become ready:\n{Path(log.name).read_text()}")
        yield server
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _ready(server: Prometheus) -> bool:
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as r:  # noqa: S310
            return bool(r.status == 200)
    except OSError:
        return False
