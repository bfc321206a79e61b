"""Logging edge cases the bridge must survive (MODE=robust|filtered)."""

import logging
import os
import sys

import structlog

MODE = os.environ["MODE"]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        return "<Unprintable>"


def main() -> int:
    if MODE == "robust":
        loop: dict[str, object] = {"name": "loop"}
        loop["self"] = loop
        log = structlog.get_logger("edge")
        log.info("self-referencing value", data=loop)
        log.info("value with a broken __str__", thing=Unprintable())
        print("app kept running")
    elif MODE == "filtered":
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        app = logging.getLogger("app")
        app.addFilter(lambda record: "healthz" not in record.getMessage())
        structlog.configure(
            processors=[structlog.processors.JSONRenderer()],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        structlog.get_logger("app").info("GET /healthz")  # dropped by the app's own filter
        app.info("payment failed for order 7")  # must still be exported
    return 0


if __name__ == "__main__":
    sys.exit(main())
