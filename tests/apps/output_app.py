"""What an application prints on its own, for the console-output tests. No telemetry code.

MODE=unconfigured: logging is never configured; warnings and errors reach stderr through
Python's last-resort handler, INFO goes nowhere.
MODE=flask: the Flask development server (werkzeug adds its console handler only when it
finds none) serves two requests, then gets SIGINT (Ctrl+C).
"""

import contextlib
import logging
import os
import signal
import sys
import threading
import urllib.request

MODE = os.environ.get("MODE", "unconfigured")


def unconfigured() -> None:
    log = logging.getLogger("app")
    log.info("not shown: below the last resort's level")
    log.warning("disk almost full: %d%%", 97)
    logging.getLogger("app.db").error("replica lagging")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    print("done")


def flask() -> None:
    from flask import Flask

    app = Flask("output_app")
    port = int(os.environ["PORT"])

    @app.get("/hello")
    def hello() -> str:
        app.logger.warning("hello served")
        return "hello"

    def client() -> None:
        for _ in range(50):  # until the server listens
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5).read()
                break
            except OSError:
                threading.Event().wait(0.1)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5).read()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=client, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        app.run(host="127.0.0.1", port=port)
    print("stopped")


if __name__ == "__main__":
    {"unconfigured": unconfigured, "flask": flask}[MODE]()
    sys.exit(0)
