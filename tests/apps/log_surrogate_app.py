"""Logs an ordinary message, one holding a lone surrogate (text decoded with
``surrogateescape``, or cut in the middle of a pair), and another ordinary one, through
stdlib logging (MODE=stdlib) or structlog (MODE=structlog), to its own console. No
OpenTelemetry code: the records reach the backend through the distro's log bridge.
"""

import logging
import os
import sys

import structlog

MESSAGES = ("first ordinary message", "user sent bad \ud800 value", "last ordinary message")


def main() -> int:
    if os.environ["MODE"] == "stdlib":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        log = logging.getLogger("app")
        log.info(MESSAGES[0])
        log.info("user sent %s", "bad \ud800 value")  # the surrogate in an argument
        log.info(MESSAGES[2])
    else:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.dev.ConsoleRenderer(colors=False),
            ]
        )
        log = structlog.get_logger("app")
        for message in MESSAGES:
            log.info(message)
    print("APP-END", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
