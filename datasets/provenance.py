"""Where a file came from and where code runs: the suite's one git-provenance helper and its
one device check (the lowest layer, so datasets, methods and the benchmark share them)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class DeviceError(ValueError):
    """A device name that is unknown, or names hardware this machine does not have."""


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """``git rev-parse HEAD`` of this checkout, ``+dirty`` appended when files differ from it
    (tracked changes or untracked, non-ignored files); ``"unknown"`` outside a git checkout or
    before the first commit."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    status = _git("status", "--porcelain")
    return f"{commit}+dirty" if status else commit


def check_device(device, backend: str = "torch") -> str:
    """``device`` (``cpu``, ``cuda`` or ``cuda:N``) normalised, after checking that ``backend``
    can use it here: ``"torch"`` (networks) asks torch, ``"numba"`` (the Monte Carlo kernel)
    asks numba's CUDA driver. :class:`DeviceError` names the problem otherwise."""
    name = str(device).strip().lower()
    if name == "cpu":
        return "cpu"
    if not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise DeviceError(f"unknown device '{device}'; use cpu, cuda or cuda:N")
    index = int(name[5:]) if ":" in name else 0
    if backend == "torch":
        import torch

        available, count, who = torch.cuda.is_available(), torch.cuda.device_count(), "torch"
    elif backend == "numba":
        from numba import cuda

        available, who = cuda.is_available(), "numba.cuda"
        count = len(cuda.gpus) if available else 0
    else:
        raise ValueError(f"unknown device backend '{backend}'; use torch or numba")
    if not available:
        raise DeviceError(f"device '{device}' requested but no CUDA GPU is available here ({who} finds none)")
    if index >= count:
        raise DeviceError(f"device '{device}' requested but only {count} CUDA GPU(s) are present")
    return name
