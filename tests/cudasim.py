"""Running a script under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) in a fresh process:
the simulator must be switched on before numba is imported, so each CUDA test runs apart."""

from __future__ import annotations

import os
import subprocess
import sys


def run_in_cuda_simulator(script: str, timeout: int = 600) -> None:
    """Run ``script`` with the CUDA simulator on; assert it exits 0 and prints ``cudasim ok``."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cudasim ok" in result.stdout
