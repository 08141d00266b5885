"""Command line of the datasets layer: ``python -m datasets --help``.

Each module that offers commands defines ``register_cli(subparsers)``, adding its sub-commands
with ``set_defaults(func=handler)``; ``handler(args) -> int`` is the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

CLI_MODULES = ("datasets.simulate", "datasets.validation", "datasets.bench", "datasets.cases", "datasets.nebula",
               "datasets.builder",
               "datasets.nebula_reference", "datasets.degrade")


def main(argv=None) -> int:
    from datasets.cli_errors import run_cli, split_debug

    argv, debug = split_debug(argv)
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__.splitlines()[0],
                                     epilog="--debug anywhere on the line shows tracebacks of errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in CLI_MODULES:
        importlib.import_module(module_name).register_cli(subparsers)
    args = parser.parse_args(argv)
    return run_cli(args.func, args, debug)


if __name__ == "__main__":
    sys.exit(main())
