"""Errors the command line reports as one message, without a traceback.

``UsageError`` and ``UnknownNameError`` are the suite's single types (``datasets.errors``, the
lowest layer), re-exported here for the benchmark's code.
"""

from __future__ import annotations

from datasets.errors import UnknownNameError, UsageError

__all__ = ["BenchmarkError", "UnknownNameError", "UsageError"]


class BenchmarkError(Exception):
    """A problem with the user's request, files or data (exit code 1)."""

    exit_code = 1
