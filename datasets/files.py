"""Writing files so that a reader never sees half of one: the suite's one atomic-write helper.

Every file the suite writes (dataset shards and manifests, run rows, models, checkpoints,
reports, caches) goes through :func:`atomic_path`: the content is written to a temporary name
in the same folder, flushed to disk, and renamed onto the final name with ``os.replace``, which
POSIX and Windows make atomic. An interrupted or failed write leaves the old file (or none) and
no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _fsync_dir(directory: Path) -> None:
    """Flush a folder's entry table (the rename) to disk where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # folders cannot be opened on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an exception the
    file written there is flushed (``fsync``) and renamed onto ``path``, else it is removed.

    >>> with atomic_path("out/x.parquet") as tmp:  # doctest: +SKIP
    ...     frame.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def write_bytes_atomic(path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str, fsync: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def json_default(obj):
    """JSON for numpy scalars and arrays and paths (``json.dumps(default=...)``)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def write_json_atomic(path, obj, indent: int | None = 2, sort_keys: bool = False, fsync: bool = True) -> Path:
    """Write ``obj`` as JSON (numpy values and paths converted, a final newline) atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=json_default) + "\n"
    return write_text_atomic(path, text, fsync=fsync)
