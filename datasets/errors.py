"""The suite's error types for user mistakes (lowest layer: every package raises these).

- :class:`UsageError`: a bad command-line value (exit code 2);
- :class:`UnknownNameError`: an unknown method, case, preset, config, material, model, split ...
  (exit code 2); the message always lists the known names. It is a ``KeyError`` too, so
  ``except KeyError`` keeps working. :func:`look_up` is the one way to find a name in a table
  (in the spirit of MONAI's ``look_up_option``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class UsageError(ValueError):
    """A bad command-line value (exit code 2)."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """An unknown name; the message lists the known ones (exit code 2)."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name, known: Iterable) -> UnknownNameError:
    """``unknown <kind> '<name>'; known: a, b, c``."""
    return UnknownNameError(f"unknown {kind} '{name}'; known: {', '.join(str(k) for k in known) or 'none'}")


def look_up(kind: str, name, table: Mapping):
    """``table[name]``, or :class:`UnknownNameError` naming ``kind`` and listing the known names."""
    if name not in table:
        raise unknown_name(kind, name, table)
    return table[name]
