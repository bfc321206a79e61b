"""The ``otel-excellence`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_excellence import __version__
from otel_excellence._config.settings import Settings, all_settings, render_markdown


def _settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(render_markdown(), end="")
        return 0
    resolved = Settings.load()
    for setting in all_settings():
        value = setting.parser.render(getattr(resolved, setting.field))
        print(f"{setting.env}={value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from otel_excellence._cli.demo import run_demo

    return run_demo()


def _doctor(args: argparse.Namespace) -> int:
    from otel_excellence._cli.doctor import run

    return run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-excellence",
        description="otel-excellence: OpenTelemetry for Python services, with findings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    settings = commands.add_parser(
        "settings", help="print the effective OTEL_EXCELLENCE_* settings"
    )
    settings.add_argument(
        "--markdown", action="store_true", help="print the configuration reference table"
    )
    settings.set_defaults(handler=_settings)
    demo = commands.add_parser(
        "demo",
        help="run the demo shop service under opentelemetry-instrument with a load generator",
    )
    demo.set_defaults(handler=_demo)
    doctor = commands.add_parser(
        "doctor",
        help="show the effective configuration and follow each signal to where it goes",
        description="Exit codes (the first problem, in the order distro, traces, metrics, "
        "logs): 0 healthy, 2 nothing listening, 3 gRPC/HTTP mismatch, 4 TLS problem, "
        "5 credentials rejected, 6 timeout, 7 host not found, 8 other, 9 telemetry off, "
        "10 another distro or configurator runs instead.",
    )
    doctor.set_defaults(handler=_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
