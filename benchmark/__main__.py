"""``python -m benchmark``: see ``benchmark.cli``."""


from benchmark.cli import main
from datasets.cli_errors import exit_program

if __name__ == "__main__":
    exit_program(main())
