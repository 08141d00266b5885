"""Errors the command line reports as one message, without a traceback."""

from __future__ import annotations


class BenchmarkError(Exception):
    """A problem with the user's request, files or data (exit code 1)."""

    exit_code = 1


class UsageError(BenchmarkError):
    """A bad command-line value (exit code 2)."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """An unknown method, case, preset, config or threshold rule; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
