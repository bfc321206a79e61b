"""Installing as the README says, with the pip a fresh venv ships (no upgrade).

Each test makes a new venv from the base interpreter, checks that its pip is the one
Python bundles (23.2.1 for 3.11.7), and installs this checkout the documented ways:
from a path, from a git URL, into an environment that already has SQLAlchemy 2.1, and
a framework extra after `doctor` names it. pip's own cache (~/.cache/pip) keeps the
downloads, so a second run resolves and installs without fetching.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch import clean_env
from tests.support.services import REPO, find_tool, missing

pytestmark = pytest.mark.services


class Venv:
    def __init__(self, path: Path) -> None:
        base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        subprocess.run([str(base), "-m", "venv", str(path)], check=True, timeout=300)
        self.bin = path / "bin"

    def run(
        self, *args: str, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            env=clean_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1", **env}),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(str(self.bin / "pip"), *args)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def version(self, distribution: str) -> str:
        code = f"from importlib.metadata import version; print(version({distribution!r}))"
        return self.run(str(self.bin / "python"), "-c", code).stdout.strip()


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    made = Venv(tmp_path / "venv")
    # The point of these tests: the pip Python ships, never upgraded.
    assert made.version("pip") == ensurepip.version()
    return made


def test_installs_from_a_path_with_the_stock_pip(venv: Venv, tmp_path: Path) -> None:
    """`pip install /path/to/otel-excellence` resolves with no backtracking trouble and
    the distro runs: dev mode prints a trace of a plain script."""
    started = time.monotonic()
    venv.pip("install", str(REPO))
    assert venv.version("opentelemetry-sdk") == "1.45.1"
    assert venv.version("opentelemetry-instrumentation-sqlalchemy") == "0.66b1"
    script = tmp_path / "hello.py"
    script.write_text(
        "from opentelemetry import trace\n"
        "with trace.get_tracer('hello').start_as_current_span('hello world'):\n"
        "    print('hi')\n"
    )
    run = venv.run(
        str(venv.bin / "opentelemetry-instrument"),
        str(venv.bin / "python"),
        str(script),
        cwd=tmp_path,
        OTEL_EXCELLENCE_DEV="true",
    )
    assert run.returncode == 0, run.stderr
    assert "hello world" in run.stdout
    assert run.stderr == ""
    print(f"installed and ran in {time.monotonic() - started:.0f} s")


def test_installs_from_a_git_url_into_an_env_with_sqlalchemy_2_1(venv: Venv) -> None:
    """`pip install 'otel-excellence @ git+…'` works, and (as the README says up front)
    moves SQLAlchemy 2.1 back to 2.0: the SQLAlchemy instrumentation supports < 2.1."""
    if find_tool("git") is None:
        missing("git", "install git")
    venv.pip("install", "sqlalchemy==2.1.*")
    assert venv.version("sqlalchemy").startswith("2.1.")
    # git+file://localhost/...: the packaging inside pip 23.x rejects an empty host.
    result = venv.pip("install", f"otel-excellence @ git+file://localhost{REPO}")
    assert venv.version("otel-excellence") == "0.1.0"
    assert venv.version("sqlalchemy").startswith("2.0.")
    assert "Successfully uninstalled SQLAlchemy-2.1" in result.stdout


def test_doctor_names_the_framework_and_its_extra_installs_it(venv: Venv, tmp_path: Path) -> None:
    """Flask installed, not instrumented: doctor gives the extra; after installing it the
    way the README shows for a checkout, Flask requests become server spans."""
    venv.pip("install", str(REPO), "flask")
    doctor = venv.run(str(venv.bin / "otel-excellence"), "doctor", OTEL_EXCELLENCE_DEV="true")
    assert "pip install 'otel-excellence[flask]'" in doctor.stdout, doctor.stdout
    venv.pip("install", f"{REPO}[flask]")
    after = venv.run(str(venv.bin / "otel-excellence"), "doctor", OTEL_EXCELLENCE_DEV="true")
    assert "otel-excellence[flask]" not in after.stdout
    assert "loads       flask" in after.stdout
    app = tmp_path / "app.py"
    app.write_text(
        "from flask import Flask\n"
        "app = Flask(__name__)\n"
        "@app.get('/hello')\n"
        "def hello():\n"
        "    return 'hi'\n"
        "app.test_client().get('/hello')\n"
    )
    run = venv.run(
        str(venv.bin / "opentelemetry-instrument"),
        str(venv.bin / "python"),
        str(app),
        cwd=tmp_path,
        OTEL_EXCELLENCE_DEV="true",
    )
    assert run.returncode == 0, run.stderr
    assert "GET /hello" in run.stdout and "server" in run.stdout, run.stdout
    assert os.path.exists(venv.bin / "otel-excellence")
