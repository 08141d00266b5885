"""How the kernel is compiled: every per-event function once for the CPU, and for CUDA on demand.

:func:`device_function` compiles a function with ``numba.njit`` (inlined, cached on disk) and
records its source; :func:`datasets.kernel.drivers.cuda_kernel` recompiles the recorded sources
as CUDA device functions bound to each other.
"""

from __future__ import annotations

import os

import numba
from numba import njit

# Numba's OpenMP threading layer shares libgomp with torch's CPU build and changes torch's thread
# count (1 -> all cores) when it starts; its own work-queue layer leaves torch alone.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

#: The Numba options of every CPU function: cached on disk; fast math without the 'no NaN / no
#: infinity' assumptions (the physics never produces them, but they must not be assumed).
FASTMATH = {"contract", "afn", "arcp", "nsz", "reassoc"}
CPU_OPTIONS = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy"}

#: The functions compiled by :func:`device_function`, in definition order (the CUDA build's list).
DEVICE_FUNCTIONS: list = []


def device_function(fn):
    """Compile ``fn`` for the CPU (``njit``) and record its source for the CUDA build."""
    DEVICE_FUNCTIONS.append(fn)
    return njit(inline="always", **CPU_OPTIONS)(fn)
