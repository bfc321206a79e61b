"""The peers' virtual environments, built outside the checkout and cached by their pins.

Each peer gets its own venv under ``~/.cache/otel-excellence/bench/`` (``XDG_CACHE_HOME``
honoured), named by a hash of its requirement files: a venv is rebuilt only when its pins
change. otel-excellence is installed into its venv from a copy of the checkout
(non-editable), re-installed whenever the package's sources change.

Why not the project's ``.venv``: it has an editable install, and the checkout carries
``otel_excellence.egg-info``. ``opentelemetry-instrument`` puts the working directory on
``sys.path`` and ``importlib.metadata`` finds entry points in any ``*.egg-info`` there, so a
vanilla run started from inside the checkout silently loads *our* distro. Peers therefore
run from a folder outside the checkout, and ``bench.py`` checks what each process loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REQUIREMENTS = HERE / "requirements"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otel-excellence" / "bench"
)

# The "enrichers removed" switch exists only in the bench's otel-excellence venv: a .pth
# file runs at interpreter start-up, before `opentelemetry-instrument`'s sitecustomize,
# and, when the bench sets OXBENCH_NO_ENRICHERS=1, makes the configurator build its chain
# with no enrichers (no SpanInsights, no Redis/SQLAlchemy hooks, no baggage copier). The
# public settings know nothing of it. `applied` tells the driver whether the seam it patches
# still exists; the bench refuses to report a configuration whose switch did not apply.
SWITCH_MODULE = '''\
"""otel-excellence bench switch (installed by benchmarks/_venvs.py; not part of the package)."""
import os

applied = False
if os.environ.get("OXBENCH_NO_ENRICHERS") == "1":
    try:
        from otel_excellence._config import configurator as _configurator

        if callable(getattr(_configurator, "_enrichers", None)):
            def _no_enrichers(*args, **kwargs):
                return []

            _configurator._enrichers = _no_enrichers
            applied = True
    except Exception as exc:  # reported by the driver, never fatal at start-up
        applied = False
        error = repr(exc)
'''


@dataclass(frozen=True)
class Venv:
    name: str
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def instrument(self) -> str:
        return str(self.path / "bin" / "opentelemetry-instrument")


def _expand(requirements: Path) -> list[str]:
    """The requirement lines, with ``-r`` includes inlined (for the cache key)."""
    lines: list[str] = []
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines.extend(_expand(requirements.parent / line[3:].strip()))
        elif line:
            lines.append(line)
    return lines


def _base_python() -> str:
    # The interpreter behind the harness's own venv: every peer runs on the same CPython.
    return getattr(sys, "_base_executable", None) or sys.executable


def _key(name: str, extra: str = "") -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update("\n".join(_expand(REQUIREMENTS / f"{name}.txt")).encode())
    digest.update(extra.encode())
    return digest.hexdigest()[:12]


def _run(args: list[str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args[:4])}... failed; see {log}")


def ensure(name: str, say: object = print) -> Venv:
    """The venv for ``name`` (a file in benchmarks/requirements), built if missing."""
    extra = SWITCH_MODULE if name == "ours" else ""
    path = CACHE / f"{name}-{_key(name, extra)}"
    stamp = path / ".complete"
    venv = Venv(name, path)
    if stamp.exists():
        return venv
    if path.exists():
        shutil.rmtree(path)  # a build that was interrupted
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / f"{path.name}.log"
    say(f"bench: building the {name} venv in {path} (once per set of pins; log: {log})")  # type: ignore[operator]
    _run([_base_python(), "-m", "venv", str(path)], log)
    _run([venv.python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], log)
    _run(
        [venv.python, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS / f"{name}.txt")],
        log,
    )
    if name == "ours":
        site = subprocess.run(
            [venv.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        Path(site, "oxbench_switch.py").write_text(SWITCH_MODULE)
        Path(site, "oxbench_switch.pth").write_text("import oxbench_switch\n")
    stamp.write_text("ok\n")
    return venv


def _package_files() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    for path in sorted((REPO / "otel_excellence").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append(path)
    return files


def install_ours(venv: Venv, say: object = print) -> str:
    """Install the checkout's otel-excellence into ``venv`` (non-editable) if it changed.

    The working tree is copied first (sources, pyproject, README), so uncommitted edits are
    measured and the build leaves nothing behind in the checkout. Returns the content hash.
    """
    digest = hashlib.sha256()
    files = _package_files()
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    content = digest.hexdigest()[:12]
    stamp = venv.path / ".otel-excellence"
    if stamp.exists() and stamp.read_text().strip() == content:
        return content
    say(f"bench: installing otel-excellence {content} (the working tree) into {venv.path}")  # type: ignore[operator]
    log = CACHE / f"{venv.path.name}.log"
    with tempfile.TemporaryDirectory(prefix="oxbench-src-") as staging:
        for path in files:
            target = Path(staging) / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        pip = [venv.python, "-m", "pip", "install", "--quiet"]
        _run([venv.python, "-m", "pip", "uninstall", "--quiet", "-y", "otel-excellence"], log)
        # Dependencies are already pinned in the venv; a new one in pyproject still installs.
        _run([*pip, staging], log)
    _run([venv.python, "-m", "pip", "check"], log)
    stamp.write_text(content + "\n")
    return content


def pins(venv: Venv) -> dict[str, str]:
    """Installed versions of the packages that matter for the comparison."""
    wanted = (
        "opentelemetry-sdk", "opentelemetry-distro", "opentelemetry-instrumentation",
        "otel-excellence", "logfire", "flask", "sqlalchemy", "redis", "structlog",
    )  # fmt: skip
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        f"for name in {wanted!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [venv.python, "-c", code], capture_output=True, text=True, check=True, cwd=CACHE
    )
    import json

    return dict(json.loads(result.stdout))
