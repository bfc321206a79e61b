"""Certificates for TLS and mTLS tests, made with the real `openssl` command.

A private CA signs a server certificate for 127.0.0.1/localhost and a client
certificate; a second, unrelated CA signs a client certificate that a receiver must
refuse. Nothing here is mocked: receivers, exporters and `doctor` load these files the
way they load a user's.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import find_tool, missing

_DAYS = "2"


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the private CA's certificate (OTEL_EXPORTER_OTLP_CERTIFICATE)
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by ``ca``: accepted by an mTLS receiver
    client_key: Path
    rogue_client_cert: Path  # signed by another CA: refused by an mTLS receiver
    rogue_client_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", _DAYS,
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return key, cert


def _signed(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
        "-CAcreateserial", "-days", _DAYS, "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate for loopback, a good and a rogue client certificate."""
    if find_tool("openssl") is None:
        missing("openssl", "`make test` installs the openssl package")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    rogue_ca = _ca(directory, "rogue-ca")
    server = _signed(
        directory,
        "server",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n",
    )
    client_extensions = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
    client = _signed(directory, "client", ca, client_extensions)
    rogue = _signed(directory, "rogue-client", rogue_ca, client_extensions)
    return Certificates(
        ca=ca[1],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_client_cert=rogue[0],
        rogue_client_key=rogue[1],
    )
