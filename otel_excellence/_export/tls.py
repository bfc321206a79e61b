"""OTLP/HTTP with a private CA when REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) is set.

The HTTP exporters send with a ``requests.Session`` whose ``verify`` is the file in
``OTEL_EXPORTER_OTLP_CERTIFICATE``. requests lets those two environment variables win
over a session's ``verify`` (psf/requests#3829), so on machines that set them (many
images and CI runners do) the exporter silently ignores the CA it was given and every
export fails verification. The distro hands the exporters this session instead, through
the exporters' own credential-provider entry point, when a CA file is configured.
"""

from __future__ import annotations

from typing import Any

import requests


class CaFileSession(requests.Session):
    """A ``requests.Session`` whose own ``verify`` (a CA file) beats the environment."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if verify is None and isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


def ca_file_session() -> requests.Session:
    """The ``opentelemetry_otlp_credential_provider`` entry point."""
    return CaFileSession()
