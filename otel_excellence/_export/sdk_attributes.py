"""The SDK's attribute cleaning, metric attribute keys and ``set_attribute``, common case first.

Vanilla OpenTelemetry pays these on the application's thread, and so do we:

- ``opentelemetry.attributes._clean_attribute_value`` checks every attribute a span
  starts with, every ``set_attribute`` and every metric measurement's attributes, one
  Python call per value (the mapping case copies item by item);
- ``_hash_attributes`` in the SDK's ``_view_instrument_match`` turns each measurement's
  attributes into its series key: a sort and a tuple per value, on every ``add`` and
  ``record``.

On the reference request (``benchmarks/``) that is about 400,000 instructions of the
application thread per request, as much as the distro's whole enrichment: an SDK
``Histogram.record`` costs about 130,000 instructions and an ``UpDownCounter.add``
about 80,000, and the Flask and SQLAlchemy instrumentations make seven per request.

And ``Span.set_attribute`` takes two locks in ``with`` blocks and makes two Python calls
between them, 35 times per reference request: about 100,000 instructions more than the
same steps need (``fast_set_attribute``).

The first two are pure functions, so each gets a fast path for the case nearly every
call is, and hands every other input to the SDK's own function:

- cleaning: a value of an exact primitive type, or a plain ``dict`` (or a sampler's
  read-only view of one) of non-empty ``str`` keys and such values with no length
  limit, is returned as the SDK would return it (the value itself; a new dict) without
  the per-value calls. Nothing of the caller's runs on this path: a view of any other
  mapping, or a ``dict`` subclass, goes to the SDK's function, which reads it once
  through ``items()``;
- series keys: a flat mapping of primitive values is looked up by its items and their
  exact types (so ``True``, ``1`` and ``1.0`` stay three series, as in the SDK), and
  computed by the SDK's function on a miss. At most ``MAX_KEYS`` mappings are kept; the
  cache is emptied when full.

``set_attribute`` keeps the SDK's steps, order and locks for a live span and a valid
key, and calls the SDK's method for everything else.

The results equal the SDK's for every input (``tests/test_sdk_attributes.py`` holds us
to that with generated values), including what it logs: every input it would warn
about takes its own path. Installed only on the release verified here (pinned in
``pyproject.toml``); under any other the SDK keeps its own functions.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from gc import get_referents
from types import MappingProxyType, NoneType
from typing import Any

from otel_excellence._diagnostics import internal_error, logger
from otel_excellence._export.otlp_encoding import _version

VERIFIED_VERSION = "1.45.1"
MAX_KEYS = 512

_SCALARS = frozenset({bool, int, float, bytes, NoneType})
_PRIMITIVES = _SCALARS | {str}
_TEXT = frozenset({str})

_ATTRIBUTES = "opentelemetry.attributes"
_MEASUREMENT = "opentelemetry.sdk.metrics._internal.measurement"
_VIEW_MATCH = "opentelemetry.sdk.metrics._internal._view_instrument_match"
_SDK_TRACE = "opentelemetry.sdk.trace"


def fast_clean(original: Callable[[Any, int | None], Any]) -> Callable[[Any, int | None], Any]:
    """``_clean_attribute_value`` with its common cases first; the rest is ``original``'s."""

    def clean_attribute_value(value: Any, max_string_value_length: int | None) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is str:
            if max_string_value_length is None or len(value) <= max_string_value_length:
                return value
        elif max_string_value_length is None and (kind is dict or kind is MappingProxyType):
            # The sampler hands each new span its attributes as a read-only view of
            # whatever mapping the caller passed. Only an exact dict is read here (the
            # view's referent, found without calling the caller's code), and it is copied
            # first (in C, one step) and the copy checked: what is returned is what was
            # checked, whatever another thread does to the caller's dict meanwhile.
            inner = value if kind is dict else get_referents(value)
            if kind is MappingProxyType:
                inner = inner[0] if len(inner) == 1 else None
            if type(inner) is dict:
                copy = dict(inner)
                if (
                    "" not in copy
                    and set(map(type, copy)) <= _TEXT
                    and set(map(type, copy.values())) <= _PRIMITIVES
                ):
                    return copy
        return original(value, max_string_value_length)

    clean_attribute_value.__wrapped__ = original  # type: ignore[attr-defined]
    return clean_attribute_value


def cached_keys(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``_hash_attributes`` remembered for flat mappings of primitive values."""
    keys: dict[tuple[tuple[Any, ...], tuple[type, ...]], Any] = {}

    def hash_attributes(value: Any) -> Any:
        if type(value) is not dict:
            return original(value)
        kinds = tuple(map(type, value.values()))
        if not _PRIMITIVES.issuperset(kinds):
            # Nested values: their items' types are not in ``kinds``.
            return original(value)
        # Equal items of the same exact types have an equal series key.
        seen = (tuple(value.items()), kinds)
        found = keys.get(seen)
        if found is None:
            found = original(value)
            if len(keys) >= MAX_KEYS:
                keys.clear()
            keys[seen] = found
        return found

    hash_attributes.__wrapped__ = original  # type: ignore[attr-defined]
    return hash_attributes


def fast_set_attribute(original: Callable[..., None]) -> Callable[..., None]:
    """``Span.set_attribute`` with the common case's two locks taken without ``with``.

    The SDK's method takes the span's lock, then the attributes' lock, each in a
    ``with`` block, and makes two more Python calls in between. On CPython 3.11 a
    ``with`` on a lock costs about 1,950 instructions (``Lock.__enter__`` parses its
    arguments), ``acquire()`` and ``release()`` about 900; the official instrumentations
    call this 35 times per reference request. The same steps, in the same order, under
    the same locks: a key that is a non-empty ``str`` on a live span with room for it.
    An ended span, a key the SDK warns about, a full or zero-sized or immutable mapping,
    and anyone's own attributes object take the SDK's method.
    """
    from opentelemetry import attributes as api_attributes
    from opentelemetry.attributes import BoundedAttributes

    def set_attribute(self: Any, key: str, value: Any) -> None:
        lock = self._lock
        lock.acquire()
        try:
            attributes = self._attributes
            if (
                self._end_time is None
                and type(attributes) is BoundedAttributes
                and type(key) is str
                and key
                and not attributes._immutable
                and attributes.maxlen != 0
            ):
                # The module's function at call time: the fast cleaning, when installed.
                cleaned = api_attributes._clean_attribute_value(value, attributes.max_value_len)
                inner = attributes._lock
                inner.acquire()
                try:
                    found = attributes._dict
                    if key in found:
                        del found[key]  # re-set keys move to the end, as in the SDK
                    maxlen = attributes.maxlen
                    if maxlen is None or len(found) < maxlen:
                        found[key] = cleaned
                    else:  # full: the SDK's own eviction, count and warning
                        attributes._setitem_locked(key, cleaned)
                finally:
                    inner.release()
                return
        finally:
            lock.release()
        original(self, key, value)

    set_attribute.__wrapped__ = original  # type: ignore[attr-defined]
    return set_attribute


# (module, name in it, the module that defines the SDK's function, its replacement)
_TARGETS: tuple[tuple[str, str, str, Callable[[Any], Any]], ...] = (
    (_ATTRIBUTES, "_clean_attribute_value", _ATTRIBUTES, fast_clean),
    (_MEASUREMENT, "_clean_attribute_value", _ATTRIBUTES, fast_clean),
    (_VIEW_MATCH, "_hash_attributes", _VIEW_MATCH, cached_keys),
)


# (module, class in it, method, its replacement): the class's own method only
_METHODS: tuple[tuple[str, str, str, Callable[[Any], Any]], ...] = (
    (_SDK_TRACE, "Span", "set_attribute", fast_set_attribute),
)


def install() -> bool:
    """Give the API's and SDK's modules the fast paths; True if installed; never raises."""
    try:
        versions = {_version("opentelemetry"), _version("opentelemetry.sdk")}
        if versions != {VERIFIED_VERSION}:
            logger.debug(
                "opentelemetry %s: attribute fast paths are verified for %s only; not installed",
                versions,
                VERIFIED_VERSION,
            )
            return False
        installed = False
        for name, attribute, owner, make in _TARGETS:
            module = sys.modules.get(name) or importlib.import_module(name)
            current = getattr(module, attribute, None)
            if getattr(current, "__module__", None) != owner or hasattr(current, "__wrapped__"):
                continue  # absent, already ours, or replaced by someone else: left alone
            setattr(module, attribute, make(current))
            installed = True
        for name, class_name, method, make in _METHODS:
            owner = getattr(sys.modules.get(name) or importlib.import_module(name), class_name)
            current = owner.__dict__.get(method)
            if getattr(current, "__module__", None) != name or hasattr(current, "__wrapped__"):
                continue
            setattr(owner, method, make(current))
            installed = True
    except Exception:  # noqa: BLE001 - the SDK keeps its own functions
        internal_error("installing the attribute fast paths")
        return False
    return installed


def uninstall() -> None:
    """Give the modules their own functions back (tests)."""
    for name, attribute, _, _ in _TARGETS:
        module = sys.modules.get(name)
        wrapped = getattr(getattr(module, attribute, None), "__wrapped__", None)
        if wrapped is not None:
            setattr(module, attribute, wrapped)
    for name, class_name, method, _ in _METHODS:
        owner = getattr(sys.modules.get(name), class_name, None)
        wrapped = getattr(getattr(owner, "__dict__", {}).get(method), "__wrapped__", None)
        if wrapped is not None:
            setattr(owner, method, wrapped)
