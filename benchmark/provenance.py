"""Where a result came from: code version, library versions, machine, time (the git commit:
``datasets.provenance.git_commit``, the suite's one git helper)."""

from __future__ import annotations

import ast
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import platform
from pathlib import Path

from datasets.provenance import REPO_ROOT, check_device, git_commit

#: the suite's packages whose modules a code version follows through imports
TRACED_PACKAGES = ("methods", "datasets")
#: modules that decide no result and are never part of a code version: the method registry
UNTRACED_MODULES = frozenset({"methods.registry"})

#: distribution names whose versions are recorded with every result
TRACKED_PACKAGES = ("torch", "monai", "numpy", "scipy", "scikit-learn", "pandas")


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of Python and the numerical libraries (read from package metadata, no imports)."""
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str) -> str:
    """A readable name of the device a method runs on: ``"cpu (AMD EPYC, 2 threads)"`` (torch's
    intra-op threads, which decide CPU timings), ``"cuda:0 (NVIDIA H100 ...)"``."""
    import torch

    device = check_device(device)
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    threads = torch.get_num_threads()
    return f"{device} ({cpu_name()}, {threads} thread{'s' if threads != 1 else ''})"


def utc_now() -> str:
    """The current time, ISO 8601 in UTC, second precision."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def source_hash(*paths: Path) -> str:
    """SHA-256 (16 hex digits) over the ``.py`` files under ``paths`` (files or folders), by
    relative name and content: the code version a cached result depends on."""
    digest = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(str(file.relative_to(REPO_ROOT) if file.is_relative_to(REPO_ROOT) else file.name).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def imported_sources(*files: Path) -> list[Path]:
    """``files`` and every module of ``TRACED_PACKAGES`` they import, transitively: the sources
    a piece of code runs, for its code version (``source_hash``). Sorted, no duplicates.

    Imports are read from each file's syntax tree (``import a.b``, ``from a.b import c``,
    relative imports inside the suite), at module level and inside functions alike, so a lazy
    import counts; ``from package import name`` counts ``package/name.py`` when that is a
    module, else ``package/__init__.py``. Not seen: imports made by name at run time
    (``importlib.import_module``) and the ``__init__.py`` of packages a dotted import passes
    through. ``UNTRACED_MODULES`` are skipped. A file outside the repository (a plugin) counts
    by itself; only its imports of the suite are followed.
    """
    found: set[Path] = set()
    pending = [Path(file).resolve() for file in files]
    while pending:
        path = pending.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        pending.extend(_suite_imports(path))
    return sorted(found)


def _suite_module_named(dotted: str) -> Path | None:
    """The file of the longest prefix of ``dotted`` that is a module of ``TRACED_PACKAGES``."""
    parts = dotted.split(".")
    if parts[0] not in TRACED_PACKAGES:
        return None
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in UNTRACED_MODULES:
            return None
        base = REPO_ROOT.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _suite_imports(path: Path) -> list[Path]:
    """The suite modules ``path`` imports (see ``imported_sources``)."""
    if path.is_relative_to(REPO_ROOT):
        package = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        package = package[:-1]  # a module's package; an __init__.py's own package is its folder
    else:
        package = None  # outside the repository: relative imports stay in the plugin
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None or node.level - 1 > len(package):
                    continue
                source = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names += [f"{source}.{alias.name}" for alias in node.names]
    return [file for file in map(_suite_module_named, names) if file is not None]


def file_hash(*paths: Path) -> str:
    """SHA-256 (16 hex digits) of the contents of the given files (missing files are skipped)."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def provenance(device: str) -> dict:
    """Everything recorded with a run: git commit, library versions, device name, torch's CPU
    threads (``None`` on a GPU; recorded, never part of a run key), host, time."""
    import torch

    return {
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": device_name(device),
        "cpu_threads": None if str(device).startswith("cuda") else torch.get_num_threads(),
        "host": platform.node(),
        "platform": platform.platform(),
        "created_utc": utc_now(),
    }
