"""Error fingerprints: a short hash that groups occurrences of the same error.

Exception type plus the frames it passed through, each as ``module:function`` - no
line numbers, no paths - so the hash is stable across runs, machines and unrelated
edits. Application frames are preferred (library upgrades then do not regroup errors);
when a traceback has none, all its frames are used. The same normalisation serves an
exception object and an exported stack trace, so both give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from functools import lru_cache
from types import FrameType, TracebackType

_MAX_FRAMES = 12
_LIBRARY_MARKERS = ("site-packages", "dist-packages")
_OWN_PACKAGE = os.path.dirname(os.path.realpath(__file__)) + os.sep
_FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<function>\S+)', re.M)


@lru_cache(maxsize=1)
def _stdlib_prefixes() -> tuple[str, ...]:
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    return tuple(os.path.realpath(p) + os.sep for p in paths)


@lru_cache(maxsize=4096)
def _module_of(filename: str) -> tuple[str, bool]:
    """(dotted module name derived from the path, whether it is application code)."""
    path = filename.replace("\\", "/")
    for marker in _LIBRARY_MARKERS:
        index = path.rfind(f"/{marker}/")
        if index >= 0:
            return _dotted(path[index + len(marker) + 2 :]), False
    if path.startswith("<"):
        return path, False
    real = os.path.realpath(filename)
    if real.startswith(_OWN_PACKAGE):
        return _dotted("otel_excellence/" + real[len(_OWN_PACKAGE) :]), False
    if real.startswith(_stdlib_prefixes()):
        return _dotted(os.path.relpath(real, os.path.dirname(_stdlib_prefixes()[0]))), False
    try:
        relative = os.path.relpath(real, os.getcwd())
    except ValueError:
        relative = os.path.basename(real)
    if relative.startswith(".."):
        relative = os.path.basename(real)
    return _dotted(relative), True


def _dotted(relative_path: str) -> str:
    stem = relative_path.replace("\\", "/").removesuffix(".py")
    stem = stem.removesuffix("/__init__")
    return ".".join(part for part in stem.split("/") if part and part != ".")


def _select(frames: Sequence[tuple[str, str, bool]]) -> list[str]:
    app = [f"{module}:{function}" for module, function, in_app in frames if in_app]
    chosen = app or [f"{module}:{function}" for module, function, _ in frames]
    return chosen[-_MAX_FRAMES:]


def _digest(exception_type: str, frames: Iterable[str]) -> str:
    text = "\n".join([exception_type, *frames])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _frames_of(tb: TracebackType | None) -> list[tuple[str, str, bool]]:
    # A direct walk: traceback.extract_tb also reads source lines, which we never use.
    frames: list[tuple[str, str, bool]] = []
    while tb is not None and len(frames) < 64:
        code = tb.tb_frame.f_code
        module, in_app = _module_of(code.co_filename)
        frames.append((module, code.co_name, in_app))
        tb = tb.tb_next
    return frames


def _caller_frames(start: FrameType | None) -> list[tuple[str, str, bool]]:
    frames: list[tuple[str, str, bool]] = []
    frame = start
    while frame is not None and len(frames) < 64:
        module, in_app = _module_of(frame.f_code.co_filename)
        if in_app:
            frames.append((module, frame.f_code.co_name, in_app))
        frame = frame.f_back
    frames.reverse()
    return frames


def fingerprint_exception(exception_type: str, exc: BaseException) -> str:
    """Fingerprint of a live exception.

    An exception still being handled has a traceback that stops where it was caught;
    when that holds no application frame (a database error caught inside SQLAlchemy),
    the application frames of the current call stack say where it came from.
    """
    frames = _frames_of(exc.__traceback__)
    if not any(in_app for *_, in_app in frames):
        frames = _caller_frames(sys._getframe(1)) + frames
    return _digest(exception_type, _select(frames))


def fingerprint_stacktrace(exception_type: str, stacktrace: str) -> str:
    """Fingerprint from an exported ``exception.stacktrace`` string.

    Only the last traceback counts: it is the exception itself, printed after the
    chain of causes, which is what a live exception's own traceback holds.
    """
    last = stacktrace.rsplit("Traceback (most recent call last):", 1)[-1]
    frames = []
    for match in _FRAME_LINE.finditer(last):
        module, in_app = _module_of(match.group("file"))
        frames.append((module, match.group("function"), in_app))
    return _digest(exception_type, _select(frames))


def fingerprint_text(exception_type: str, context: str) -> str:
    """Fingerprint when there is no traceback at all (an HTTP status, a bare status)."""
    return _digest(exception_type, [context])
