"""Sessions: ``nox -s tests`` (test suite, CPU), ``nox -s benchmark`` (the main job), ``nox -s lint``,
``nox -s paper`` (the paper-scale run in one GPU call), ``nox -s validate`` (the physics tables).

torch is pinned through ``constraints.txt`` (torch==2.13.0, the CPU wheel on the project's
machines); elsewhere any torch >= 2.4 works: ``nox -s tests -- --constraints none`` installs
without the constraints file (``--constraints FILE``: another one). The ``--constraints`` option
is read by the tests, benchmark and validate sessions and removed before the remaining
arguments go on (to pytest, ``python -m benchmark main``, ``python -m datasets validate``).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS_FILE = "constraints.txt"
PINNED_TORCH = "torch==2.13.0"


def split_constraints(posargs) -> tuple[str | None, list[str]]:
    """``(constraints file or None, the other arguments)`` from a session's arguments:
    ``--constraints none`` -> no file, ``--constraints FILE`` / ``--constraints=FILE`` -> FILE,
    absent -> ``constraints.txt``."""
    constraints, rest = CONSTRAINTS_FILE, []
    args = iter(posargs)
    for arg in args:
        if arg == "--constraints" or arg.startswith("--constraints="):
            value = arg.partition("=")[2] if "=" in arg else next(args, None)
            if not value:
                raise ValueError("--constraints needs a value: a constraints file, or 'none'")
            constraints = None if value.lower() == "none" else value
        else:
            rest.append(arg)
    return constraints, rest


def session_constraints(session: nox.Session) -> tuple[str | None, list[str]]:
    """:func:`split_constraints` of the session's arguments; a missing value ends the session."""
    try:
        return split_constraints(session.posargs)
    except ValueError as err:
        session.error(str(err))


def install(session: nox.Session, constraints: str | None, extras: str = "") -> None:
    """The project (and its pinned torch when a constraints file is used) into the session."""
    if constraints is None:  # any torch >= 2.4, as pyproject.toml allows
        session.install("-e", f".{extras}")
        return
    session.install("-c", constraints, PINNED_TORCH)
    session.install("-c", constraints, "-e", f".{extras}")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite on CPU (installs Debian's chromium for the report's browser test);
    ``nox -s tests -- [--constraints none|FILE] [pytest arguments]``."""
    constraints, pytest_args = session_constraints(session)
    install(session, constraints, "[test]")
    if not os.environ.get("BSE_BENCH_SKIP_BROWSER"):
        session.run("bash", "scripts/ensure_chromium.sh", external=True)
    session.env.setdefault("OMP_NUM_THREADS", "1")  # see README: 2 torch threads collapse on 2-core machines
    session.run("pytest", *(pytest_args or ["-q", "--durations=15"]))  # the slowest tests, for CI time


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """The main job: build the data, train, run every method on every case, write the report.

    ``nox -s benchmark`` runs the ``quick`` preset on CPU; ``nox -s benchmark -- --preset paper
    --device cuda`` the paper-scale one on a GPU.
    """
    constraints, args = session_constraints(session)
    install(session, constraints)
    session.env.setdefault("OMP_NUM_THREADS", "1")
    session.run("python", "-m", "benchmark", "main", *(args or ["--preset", "quick"]))


@nox.session(venv_backend="none")
def paper(session: nox.Session) -> None:
    """The paper-scale run in one GPU call, in the current Python (the GPU machine has no package
    index: carry monai with ``scripts/prepare_gpu_carry.sh``): data, training as the budget
    allows, evaluation, report, then a <= 60 MiB pack. ``nox -s paper -- BUDGET_SECONDS``."""
    budget = session.posargs[0] if session.posargs else "540"
    session.env.setdefault("PYTHONUNBUFFERED", "1")
    session.run("python", "-m", "benchmark", "main", "--preset", "paper", "--device", "cuda",
                "--time-budget", budget, external=True)
    session.run("python", "-m", "benchmark", "pack", "outputs/paper", "--max-mib", "60", external=True)


@nox.session(python=PYTHON)
def validate(session: nox.Session) -> None:
    """The simulator's validation table (bulk eta vs measurements) and speed report."""
    constraints, args = session_constraints(session)
    install(session, constraints)
    # the csda preset is the one validated against the measured bands; the default physics is
    # validated against Nebula's stacks (compare-nebula; misses listed in the README)
    session.run("python", "-m", "datasets", "validate", "--physics", "csda", "--strict", *args)
    session.run("python", "-m", "datasets", "compare-nebula")
    session.run("python", "-m", "datasets", "bench")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")
