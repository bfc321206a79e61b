"""Logs the way real applications configure logging. No OpenTelemetry code of its own
except where MODE=before (which starts telemetry with otel_excellence.configure()).

MODE:
  default             structlog untouched (its default ConsoleRenderer)
  json                app calls structlog.configure(...JSONRenderer) after the distro started
  console             app calls structlog.configure(...ConsoleRenderer(colors=False))
  before              app configures structlog (JSON) first, then otel_excellence.configure()
  stdlib              structlog routed through stdlib (LoggerFactory + JSONRenderer)
  formatter           structlog through stdlib's ProcessorFormatter (the structlog docs' recipe)
  dictconfig          plain stdlib logging configured with logging.config.dictConfig
  helper              structlog.wrap_logger with explicit processors + structlog_processors()
Every mode logs, inside a span, one info event with typed fields and one exception.
"""

import datetime
import logging
import logging.config
import os
import sys
import uuid

import structlog
from opentelemetry import trace

MODE = os.environ["MODE"]
FIELDS = {
    "order_id": 42,
    "amount": 9.5,
    "paid": True,
    "tags": ["a", "b"],
    "when": datetime.date(2026, 11, 25),
    "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
}


def configure() -> None:
    json_chain = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(default=str),
    ]
    if MODE in {"json", "before"}:
        structlog.configure(processors=json_chain)
    elif MODE == "console":
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.dev.ConsoleRenderer(colors=False),
            ]
        )
    elif MODE == "stdlib":
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(default=str),
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
    elif MODE == "formatter":
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(default=str),
                ],
            )
        )
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                structlog.processors.format_exc_info,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
    elif MODE == "dictconfig":
        logging.config.dictConfig(
            {
                "version": 1,
                "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
                "handlers": {
                    "out": {"class": "logging.StreamHandler", "formatter": "plain",
                            "stream": "ext://sys.stdout"},
                },
                "root": {"level": "INFO", "handlers": ["out"]},
            }
        )  # fmt: skip
    if MODE == "before":
        import otel_excellence

        otel_excellence.configure()


def main() -> int:
    configure()
    tracer = trace.get_tracer("log.app")
    if MODE == "dictconfig":
        log = logging.getLogger("shop.orders")
        with tracer.start_as_current_span("checkout"):
            log.info("order placed", extra=FIELDS)
            try:
                raise TimeoutError("payment provider timed out")
            except TimeoutError:
                log.exception("payment failed")
        log.debug("below the app's level: dropped everywhere")
        return 0
    log = structlog.get_logger("shop.orders")
    if MODE == "helper":
        import otel_excellence

        log = structlog.wrap_logger(
            structlog.PrintLogger(),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                *otel_excellence.structlog_processors(),
                structlog.processors.JSONRenderer(default=str),
            ],
        )
    with tracer.start_as_current_span("checkout"):
        log.info("order placed", **FIELDS)
        try:
            raise TimeoutError("payment provider timed out")
        except TimeoutError:
            log.exception("payment failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
