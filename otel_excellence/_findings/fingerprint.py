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
from collections import deque
from collections.abc import Iterable, Sequence
from functools import lru_cache
from types import CodeType, FrameType, TracebackType

_MAX_FRAMES = 12
# Frames considered, the innermost ones, on both paths (live exception and text): a
# RecursionError's thousand frames cost no more than 64, and both paths agree.
_MAX_CONSIDERED_FRAMES = 64
# What is read of an exported stack trace: its end, where the exception's own traceback
# is (64 frames of "File ..." line, source line and carets take ~16-20 KiB).
MAX_STACKTRACE_READ = 32 * 1024
# Longer names are cut (identically on both paths): they key a cache and a hash, and no
# real path or function name comes near.
_MAX_NAME = 512
_LIBRARY_MARKERS = ("site-packages", "dist-packages")
# The otel_excellence package directory (this file is in its _findings/).
_OWN_PACKAGES = tuple(
    {os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep}
    | {os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep}
)
# One line at a time ([ \t] never crosses a line, so blank lines cost one step each);
# "|" for the frames of an exception group.
_FRAME_LINE = re.compile(
    r'^[ \t|]*File "([^\n]{1,1024}?)", line \d{1,9}, in ([^\s]{1,512})', re.MULTILINE
)
_TRACEBACK = "Traceback (most recent call last):"


@lru_cache(maxsize=1)
def _stdlib_prefixes() -> tuple[str, ...]:
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    real = {os.path.realpath(p) for p in paths}
    return tuple(sorted(p + os.sep for p in paths | real))


def _module_of(filename: str) -> tuple[str, bool]:
    return _module_of_name(filename[:_MAX_NAME])


@lru_cache(maxsize=4096)
def _module_of_name(filename: str) -> tuple[str, bool]:
    """(dotted module name derived from the path, whether it is application code)."""
    path = filename.replace("\\", "/")
    for marker in _LIBRARY_MARKERS:
        index = path.rfind(f"/{marker}/")
        if index >= 0:
            return _dotted(path[index + len(marker) + 2 :]), False
    if path.startswith("<"):
        return path, False
    # No filesystem access (no realpath): a path read from a stack trace must not cost
    # a system call per component. Our package and the stdlib are known by both names.
    real = os.path.abspath(filename)
    for own in _OWN_PACKAGES:
        if real.startswith(own):
            return _dotted("otel_excellence/" + real[len(own) :]), False
    for prefix in _stdlib_prefixes():
        if real.startswith(prefix):
            return _dotted(os.path.relpath(real, prefix)), False
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
    text = "\n".join([exception_type[:_MAX_NAME], *frames])
    # surrogatepass: a lone surrogate (from a log value) must not make hashing raise.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _codes_of(tb: TracebackType | None) -> tuple[CodeType, ...]:
    # A direct walk: traceback.extract_tb also reads source lines, which we never use.
    # The walk is as deep as the stack (bounded by the recursion limit); the innermost
    # frames are kept.
    codes: deque[CodeType] = deque(maxlen=_MAX_CONSIDERED_FRAMES)
    while tb is not None:
        codes.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    return tuple(codes)


def _frames_of(codes: Iterable[CodeType]) -> list[tuple[str, str, bool]]:
    frames = []
    for code in codes:
        module, in_app = _module_of(code.co_filename)
        frames.append((module, code.co_name[:_MAX_NAME], in_app))
    return frames


def _caller_frames(start: FrameType | None) -> list[tuple[str, str, bool]]:
    frames: list[tuple[str, str, bool]] = []
    frame = start
    while frame is not None and len(frames) < 64:
        module, in_app = _module_of(frame.f_code.co_filename)
        if in_app:
            frames.append((module, frame.f_code.co_name[:_MAX_NAME], in_app))
        frame = frame.f_back
    frames.reverse()
    return frames


# Fingerprints by exception type and the code objects its traceback passed through (by
# id: hashing a code object hashes its constants): a failing dependency raises from the
# same place again and again. None for a traceback without an application frame, whose
# fingerprint depends on the call stack around it.
_MAX_TRACEBACKS = 1024
_by_traceback: dict[tuple[str, tuple[int, ...]], tuple[str | None, tuple[CodeType, ...]]] = {}


def fingerprint_exception(exception_type: str, exc: BaseException) -> str:
    """Fingerprint of a live exception.

    An exception still being handled has a traceback that stops where it was caught;
    when that holds no application frame (a database error caught inside SQLAlchemy),
    the application frames of the current call stack say where it came from.
    """
    codes = _codes_of(exc.__traceback__)
    exception_type = exception_type[:_MAX_NAME]  # as _digest reads it
    key = (exception_type, tuple(map(id, codes)))
    known = _by_traceback.get(key)
    if known is None:
        frames = _frames_of(codes)
        in_app = any(in_app for *_, in_app in frames)
        digest = _digest(exception_type, _select(frames)) if in_app else None
        if len(_by_traceback) >= _MAX_TRACEBACKS:
            _by_traceback.clear()  # bounded; as good as LRU for a hot few
        # The entry holds the code objects, so their ids cannot be reused while cached.
        known = _by_traceback[key] = (digest, codes)
    if known[0] is not None:
        return known[0]
    frames = _caller_frames(sys._getframe(1)) + _frames_of(codes)
    return _digest(exception_type, _select(frames))


def fingerprint_stacktrace(exception_type: str, stacktrace: str) -> str:
    """Fingerprint from an exported ``exception.stacktrace`` string.

    Only the last traceback counts: it is the exception itself, printed after the
    chain of causes, which is what a live exception's own traceback holds. Only the end
    of the text is read (``MAX_STACKTRACE_READ``), and of its frames the innermost 64.
    """
    tail = stacktrace[-MAX_STACKTRACE_READ:]
    last = tail[tail.rfind(_TRACEBACK) + 1 :] if _TRACEBACK in tail else tail
    found = _FRAME_LINE.findall(last)[-_MAX_CONSIDERED_FRAMES:]
    frames = []
    for filename, function in found:
        module, in_app = _module_of(filename)
        frames.append((module, function[:_MAX_NAME], in_app))
    return _digest(exception_type, _select(frames))


def fingerprint_text(exception_type: str, context: str) -> str:
    """Fingerprint when there is no traceback at all (an HTTP status, a bare status)."""
    return _digest(exception_type, [context])
