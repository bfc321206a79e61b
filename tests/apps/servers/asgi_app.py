"""A FastAPI service for uvicorn (single process, ``--workers``) and gunicorn's uvicorn
worker, no telemetry code of its own. ``/work?i=N`` answers with the pid of the process
that served it, after doing part of its work in a thread (``asyncio.to_thread``).

Logging is left unconfigured by the app; the servers configure their own loggers.
"""

import asyncio
import logging
import os

from fastapi import FastAPI
from opentelemetry import trace

app = FastAPI()
log = logging.getLogger("app")
tracer = trace.get_tracer("servers.asgi")
log.warning("app module imported")


def _in_thread(i: str) -> None:
    with tracer.start_as_current_span("app.work") as span:
        span.set_attribute("app.request", i)


@app.get("/work")
async def work(i: str = "", sleep: float = 0.0) -> dict[str, object]:
    await asyncio.to_thread(_in_thread, i)
    await asyncio.sleep(sleep)
    log.warning("request %s served", i)
    return {"pid": os.getpid(), "i": i}
