"""A forked child reports as itself, with working exporters, from its first span.

Pre-fork servers (gunicorn, Celery prefork, uWSGI, multiprocessing's fork) configure
telemetry once, in the parent, and fork workers from it. What SDK 1.45 already does in
the child (measured; ``tests/test_fork.py`` pins it): it restarts the batch processors'
and the metric reader's threads with fresh locks, empties the span and log queues it
inherited (the parent still holds those items and exports them itself, once), and
re-runs its process-dependent resource detectors, which gives the child a new
``service.instance.id``. What it does not do, and this module adds:

- ``process.*`` resource attributes: ours were detected once, before the fork, so every
  worker reported the parent's ``process.pid``. They are detected again in the child.
- Metric points recorded before the fork stay in the child's storage: every worker
  would export the parent's counts again as its own (N workers, N times the master's
  pre-fork measurements), and the storage's locks could have been held by the parent's
  reader thread, mid-collection, at the instant of the fork (a child that deadlocks on
  its first export). The child starts with empty storages and fresh locks; the parent
  keeps and exports its own points.
- The shutdown plan: the child has not shut down anything, and its exit watcher thread
  is the parent's. (The delivery counts start from zero in ``delivery.py``'s own fork
  handler: the child would report the parent's queued items as its own losses.)

Registered with ``os.register_at_fork`` after the SDK's providers were created, so it
runs after the SDK's own handlers (``after_in_child`` runs in registration order).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import OTELResourceDetector, ProcessResourceDetector, Resource
from opentelemetry.util.types import AttributeValue

from otel_excellence._diagnostics import internal_error
from otel_excellence._export.shutdown import ShutdownPlan

_PROCESS_PREFIX = "process."
_current: ShutdownPlan | None = None
_registered = False


def install(plan: ShutdownPlan) -> None:
    """Make ``plan``'s providers and counters fork-safe (once per process)."""
    global _current, _registered  # noqa: PLW0603 - one SDK per process
    _current = plan
    if _registered or not hasattr(os, "register_at_fork"):
        return
    _registered = True
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _after_fork_in_child() -> None:
    plan = _current
    if plan is None:
        return
    try:
        plan.reset_after_fork()
        providers = dict(plan.providers)
        _refresh_process_attributes(providers.values())
        meter_provider = providers.get("metrics")
        if meter_provider is not None:
            _fresh_metric_storage(meter_provider)
    except Exception:  # noqa: BLE001 - a forked worker must start whatever happens here
        internal_error("after fork")


def _refresh_process_attributes(providers: Any) -> None:
    """Re-detect the ``process.*`` attributes the resource carries, in this process."""
    current = _resource_of(next(iter(providers), None))
    if current is None:
        return
    user = OTELResourceDetector().detect().attributes
    detected = ProcessResourceDetector().detect().attributes
    # Only attributes the resource already has: a disabled detector stays disabled, the
    # command line stays dropped, and what the user set stays theirs.
    update: Mapping[str, AttributeValue] = {
        key: value
        for key, value in detected.items()
        if key.startswith(_PROCESS_PREFIX) and key in current.attributes and key not in user
    }
    if not update:
        return
    for provider in providers:
        # The SDK's own fork handling goes through this method, which also re-points
        # every tracer and logger already handed out (instrumentations cache them).
        provider._update_resource(Resource(update))


def _resource_of(provider: Any) -> Resource | None:
    resource = getattr(provider, "resource", None)
    if resource is None:  # MeterProvider keeps it in its configuration
        resource = getattr(getattr(provider, "_sdk_config", None), "resource", None)
    return resource if isinstance(resource, Resource) else None


def _fresh_metric_storage(meter_provider: Any) -> None:
    # No public API resets a MeterProvider's storage. This mirrors how the SDK builds it
    # (SynchronousMeasurementConsumer.__init__); instruments hold the consumer, not the
    # storages, so every instrument created before the fork keeps working.
    from opentelemetry.sdk.metrics._internal.metric_reader_storage import MetricReaderStorage

    consumer = getattr(meter_provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if consumer is None or storages is None:
        return
    consumer._lock = threading.Lock()
    consumer._reader_storages = {
        reader: MetricReaderStorage(
            consumer._sdk_config,
            reader._instrument_class_temporality,
            reader._instrument_class_aggregation,
        )
        for reader in storages
    }
