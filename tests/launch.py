"""Run a program under ``opentelemetry-instrument`` the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APPS = Path(__file__).parent / "apps"
BIN = Path(sys.executable).parent


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without any OTEL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def instrumented(
    app: str, env: Mapping[str, str], *, timeout: float = 120, wrapper: bool = True
) -> Run:
    command = [str(BIN / "opentelemetry-instrument")] if wrapper else []
    command += [sys.executable, str(APPS / app)]
    started = time.monotonic()
    process = subprocess.run(
        command,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(process.returncode, process.stdout, process.stderr, time.monotonic() - started)
