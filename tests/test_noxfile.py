"""The noxfile's ``--constraints`` option is consumed before the arguments go on to pytest."""

import pytest

nox = pytest.importorskip("nox")
noxfile = pytest.importorskip("noxfile")


@pytest.mark.parametrize("posargs, expected", [
    ([], ("constraints.txt", [])),
    (["-q", "-x"], ("constraints.txt", ["-q", "-x"])),
    (["--constraints", "none", "-q"], (None, ["-q"])),
    (["-k", "cli", "--constraints", "NONE"], (None, ["-k", "cli"])),
    (["--constraints=mine.txt", "tests/test_cli.py"], ("mine.txt", ["tests/test_cli.py"])),
    (["--constraints", "other.txt"], ("other.txt", [])),
])
def test_constraints_option_is_split_from_the_pytest_arguments(posargs, expected):
    assert noxfile.split_constraints(posargs) == expected


@pytest.mark.parametrize("posargs", [["--constraints"], ["--constraints="]])
def test_constraints_without_a_value_is_refused(posargs):
    with pytest.raises(ValueError, match="--constraints needs a value: a constraints file, or 'none'"):
        noxfile.split_constraints(posargs)
