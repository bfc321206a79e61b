"""The real otelcol-excellence binary, run with the shipped configs on loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port, wait_for_port
from tests.support.services import REPO, collector_binary

CONFIGS = REPO / "collector-config"


@dataclass
class Collector:
    """One Collector process; ``restart`` keeps its ports and its storage directory."""

    config: str
    env: dict[str, str]
    overlays: list[str] = field(default_factory=list)  # more configs merged over ``config``
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    self_metrics_port: int = field(default_factory=free_port)
    storage: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="otelcol-"))
    log_path: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def full_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELCOL_"))}
        env.update(
            {
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
                "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
                "OTELCOL_SELF_METRICS_HOST": "127.0.0.1",
                "OTELCOL_SELF_METRICS_PORT": str(self.self_metrics_port),
                "OTELCOL_STORAGE_DIR": self.storage,
            }
        )
        env.update(self.env)
        return env

    def start(self) -> Collector:
        self.log_path = self.log_path or os.path.join(self.storage, "collector.log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        configs = [
            arg
            for name in (self.config, *self.overlays)
            for arg in ("--config", str(CONFIGS / name))
        ]
        self.process = subprocess.Popen(
            [collector_binary(), *configs],
            env=self.full_env(),
            stdout=log,
            stderr=log,
        )
        if not (wait_for_port(self.health_port, 60) and self._healthy(60)):
            raise RuntimeError(f"Collector did not become healthy:\n{self.log()}")
        return self

    def _healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/", timeout=2
                ) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> int:
        """SIGTERM, as a service manager does; returns the exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def restart(self) -> Collector:
        self.stop()
        return self.start()

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def validate(config: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [collector_binary(), "validate", "--config", str(CONFIGS / config)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
