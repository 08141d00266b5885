"""Command line of the datasets layer: ``python -m datasets --help``.

Each module that offers commands defines ``register_cli(subparsers)``, adding its sub-commands
with ``set_defaults(func=handler)``; ``handler(args) -> int`` is the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

CLI_MODULES = ("datasets.simulate", "datasets.validation", "datasets.bench", "datasets.cases", "datasets.builder")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in CLI_MODULES:
        importlib.import_module(module_name).register_cli(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
