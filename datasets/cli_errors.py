"""One exit-code policy for the suite's command lines (lowest layer: every CLI may use it).

- 0: success;
- 1: the input, a file or the data is wrong (one line ``error: ...`` naming the file and problem);
- 2: a bad command-line value or an unknown name (argparse's code for usage errors);
- 130: interrupted with Ctrl-C: what was finished is kept, the same command resumes.

No traceback is shown unless ``--debug`` is given (or ``BSE_BENCH_DEBUG=1``): a traceback of
a user error is noise, and torch's advice in some (to load files with ``weights_only=False``)
must never be followed for files from others.
"""

from __future__ import annotations

import os
import sys
import traceback

from datasets.errors import UnknownNameError, UsageError
from datasets.provenance import DeviceError, check_device

__all__ = ["UnknownNameError", "UsageError", "run_cli", "split_debug"]

INTERRUPTED_MESSAGE = "interrupted: finished work is kept; rerun the same command to resume"


def split_debug(argv) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted anywhere on the line), and whether it was there."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("BSE_BENCH_DEBUG") == "1"
    return [a for a in argv if a != "--debug"], debug


def run_cli(handler, args, debug: bool = False) -> int:
    """``handler(args) -> int`` with the exit-code policy above."""
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - every error becomes one line; --debug shows the rest
        if debug:
            traceback.print_exc()
        print(f"error: {error_message(err)}", file=sys.stderr)
        return int(getattr(err, "exit_code", 2 if isinstance(err, KeyError) else 1))


def error_message(err: BaseException) -> str:
    """One line: the message of ``err`` (KeyError unquoted), its type when it has no message."""
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    else:
        text = str(err)
    text = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)) and err.filename and \
            str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def check_positive(name: str, value) -> None:
    """Raise ``UsageError`` unless ``value`` is ``None`` or a positive integer."""
    if value is not None and (int(value) != value or value < 1):
        raise UsageError(f"{name} must be a positive integer, got {value}")


def check_torch_device(device: str) -> str:
    """``device`` as given, unless torch cannot use it here (``datasets.provenance.check_device``):
    then ``UsageError`` naming the problem (exit code 2)."""
    try:
        check_device(device, backend="torch")
    except DeviceError as err:
        raise UsageError(str(err)) from err
    return str(device)
