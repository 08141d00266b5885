"""The results folder of a preset and the run cache.

Layout (docs/architecture.md)::

    outputs/<preset>/data/                       the dataset
    outputs/<preset>/models/<method>-<config>/   trained models
    outputs/<preset>/runs/<run_key>/             rows.parquet, volumes.npz, summary.json
    outputs/<preset>/results.parquet             all rows of all runs (each run's added when it ends)
    outputs/<preset>/report.html                 the report
    outputs/<preset>/cache/                      thresholds chosen on validation, custom-case stacks

Rows are :class:`benchmark.schema.ResultRow` rows, read and written through
``benchmark.schema.normalise_rows``; files are written atomically (``datasets.files``). A run
folder is written under a temporary name and renamed into place in one step, only after the run
succeeded: a folder ``runs/<run_key>/`` is always complete, a failed or
interrupted run leaves nothing behind, and a finished run is never redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.schema import RESULT_IDENTITY, RUN_IDENTITY, empty_rows, normalise_rows
from datasets.files import atomic_path, write_json_atomic

RUN_FILES = ("rows.parquet", "volumes.npz", "summary.json")
DEFAULT_OUTPUTS = Path("outputs")


class DuplicateResultsError(BenchmarkError):
    """``results.parquet`` counts a result more than once (see ``RESULT_IDENTITY``)."""


def fix_command(results_dir) -> str:
    """The command that rebuilds ``results.parquet`` from the run folders, newest run counted."""
    return f"python -m benchmark doctor --results {results_dir} --fix"


def newest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with one row per ``RESULT_IDENTITY``: the newest run's (``created_utc``, then
    ``run_key``), in case/read dose/method/sample order."""
    return (rows.sort_values(["created_utc", "run_key"], kind="stable")
            .drop_duplicates(RESULT_IDENTITY, keep="last")
            .sort_values(["case", "read_electrons_per_pixel", "method", "config", "variant", "threshold_rule",
                          "seed", "sample"],
                         kind="stable")
            .reset_index(drop=True))


def duplicated_results(rows: pd.DataFrame) -> list[str]:
    """One line per run identity (``benchmark.schema.RUN_IDENTITY``) whose
    samples occur more than once in ``rows``, naming the samples' count and the runs involved;
    ``[]`` when every result occurs once."""
    if rows.empty:
        return []
    doubled = rows[rows.duplicated(RESULT_IDENTITY, keep=False)]
    lines = []
    for identity, group in doubled.groupby(RUN_IDENTITY, dropna=False, sort=True):
        named = ", ".join(f"{column} {value}" for column, value in zip(RUN_IDENTITY, identity))
        runs = sorted(group["run_key"].astype(str).unique()) if "run_key" in group.columns else []
        lines.append(f"{named}: {len(group)} rows for {group['sample'].nunique()} samples"
                     + (f" (runs {', '.join(runs)})" if runs else ""))
    return lines


def check_unique_results(rows: pd.DataFrame, results_dir) -> None:
    """Raise :class:`DuplicateResultsError` naming every result counted more than once in
    ``results_dir``'s ``results.parquet`` and the command that removes the extra rows."""
    lines = duplicated_results(rows)
    if lines:
        shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
        raise DuplicateResultsError(
            f"{Path(results_dir) / 'results.parquet'} counts {len(lines)} result set(s) more than once "
            f"({shown}); remove the extra rows (the newest run of each result is kept) with: "
            f"{fix_command(results_dir)}")


def run_key(fields: dict) -> str:
    """Hash (16 hex digits) of everything a run's result depends on (JSON, sorted keys)."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_parquet_atomic(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` (without its index) to ``path`` atomically (``datasets.files.atomic_path``)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


@contextlib.contextmanager
def exclusive_lock(path):
    """Hold an exclusive advisory lock on the file ``path`` (created if missing) for the block:
    processes sharing a results folder update ``results.parquet`` one at a time. Where the
    platform has no ``fcntl`` (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the project's Linux machines
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ResultsStore:
    """The results folder of one preset (``outputs/<preset>/`` by default).

    A run folder that cannot be read (a truncated parquet, a corrupt summary) is set aside as
    ``runs/.unreadable-<key>-<n>`` with a warning, so the run is recomputed and one bad folder
    never breaks the results table or later runs.
    """

    def __init__(self, root, log=None):
        self.root = Path(root)
        self.log = log or _warn

    data_dir = property(lambda self: self.root / "data")
    models_dir = property(lambda self: self.root / "models")
    runs_dir = property(lambda self: self.root / "runs")
    cache_dir = property(lambda self: self.root / "cache")
    results_path = property(lambda self: self.root / "results.parquet")
    lock_path = property(lambda self: self.root / ".results.lock")  #: results.parquet's writers take turns
    report_path = property(lambda self: self.root / "report.html")

    def run_dir(self, key: str) -> Path:
        return self.runs_dir / key

    def is_complete(self, key: str) -> bool:
        run_dir = self.run_dir(key)
        return all((run_dir / name).is_file() for name in RUN_FILES)

    def check_run(self, key: str) -> pd.DataFrame:
        """Read and check a finished run's files; raise ``ValueError`` naming the bad file."""
        run_dir = self.run_dir(key)
        for name in RUN_FILES:
            if not (run_dir / name).is_file():
                raise ValueError(f"{run_dir / name} is missing")
        try:
            rows = normalise_rows(pd.read_parquet(run_dir / "rows.parquet"))
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise ValueError(f"{run_dir / 'rows.parquet'} is unreadable ({type(err).__name__}: {err})") from err
        try:
            json.loads((run_dir / "summary.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{run_dir / 'summary.json'} is unreadable ({err})") from err
        try:
            with np.load(run_dir / "volumes.npz", allow_pickle=False) as volumes:
                volumes.files  # noqa: B018 - reads the zip directory
        except Exception as err:  # noqa: BLE001 - zipfile/numpy raise several types
            raise ValueError(f"{run_dir / 'volumes.npz'} is unreadable ({type(err).__name__}: {err})") from err
        return rows

    def set_aside(self, key: str, reason: str) -> Path:
        """Move an unreadable run folder out of the way (kept for inspection) and warn."""
        n = 0
        while (target := self.runs_dir / f".unreadable-{key}-{n}").exists():
            n += 1
        os.replace(self.run_dir(key), target)
        self.log(f"warning: set aside unreadable run {key} ({reason}) as {target}; it will be recomputed")
        return target

    def load_rows(self, key: str) -> pd.DataFrame | None:
        """The rows of a finished run, or ``None`` when the run is not cached (or was unreadable)."""
        if not self.run_dir(key).exists():
            return None
        try:
            return self.check_run(key)
        except ValueError as err:
            self.set_aside(key, str(err))
            return None

    def load_summary(self, key: str) -> dict:
        return json.loads((self.run_dir(key) / "summary.json").read_text())

    def save_run(self, key: str, rows: pd.DataFrame, volumes: dict[str, np.ndarray],
                 summary: dict) -> Path:
        """Write a finished run's three files and move the folder into place in one rename."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.run_dir(key)
        tmp = self.runs_dir / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            normalise_rows(rows).to_parquet(tmp / "rows.parquet", index=False)
            np.savez_compressed(tmp / "volumes.npz", **volumes)
            write_json_atomic(tmp / "summary.json", summary, fsync=False)
            if final.exists():  # an unreadable leftover, or a twin run that finished first
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def run_keys(self) -> list[str]:
        """Keys of all run folders (complete or not; :meth:`load_rows` checks them)."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def all_run_rows(self) -> pd.DataFrame:
        """The rows of every readable run folder, superseded runs included (unreadable folders
        are set aside: :meth:`set_aside`)."""
        frames = [rows for key in self.run_keys() if (rows := self.load_rows(key)) is not None and len(rows)]
        if not frames:
            return empty_rows()
        return pd.concat(frames, ignore_index=True)

    def rebuild_results(self) -> pd.DataFrame:
        """Write ``results.parquet`` (atomically): the rows of every readable run, one row per
        ``RESULT_IDENTITY`` (:func:`newest_rows`: the newest run of a result counts). Unreadable
        run folders are set aside (:meth:`set_aside`), never a reason to fail."""
        with exclusive_lock(self.lock_path):
            return self._rebuild_results()

    def _rebuild_results(self) -> pd.DataFrame:
        results = newest_rows(self.all_run_rows())
        write_parquet_atomic(results, self.results_path)
        return results

    def add_run_results(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Count one finished run's ``rows`` in ``results.parquet`` without reading every run
        folder again (that read grows with the folder: 6 s for 426 runs on the project's Xeon, once
        per run): the counted rows plus these, the newest run of each result counted
        (:func:`newest_rows`, as :meth:`rebuild_results` decides). Processes sharing the folder
        take turns (:func:`exclusive_lock`). A missing, unreadable or other-schema
        ``results.parquet`` is rebuilt from the run folders instead."""
        rows = normalise_rows(rows)
        with exclusive_lock(self.lock_path):
            try:
                current = normalise_rows(pd.read_parquet(self.results_path))
            except Exception:  # noqa: BLE001 - missing or unreadable: rebuilt from the run folders
                current = None
            if current is None or list(current.columns) != list(rows.columns):
                return self._rebuild_results()
            results = newest_rows(pd.concat([current, rows], ignore_index=True))
            write_parquet_atomic(results, self.results_path)
            return results

    def read_results(self) -> pd.DataFrame:
        """The rows of ``results.parquet``; :class:`DuplicateResultsError` when it counts a result
        twice (written by older code), naming them and the command that removes them."""
        rows = pd.read_parquet(self.results_path)
        check_unique_results(rows, self.root)
        return rows


def superseded_runs(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Runs in ``rows`` (all run folders' rows) none of whose rows are counted by
    :func:`newest_rows`: run key -> the keys of the newer runs counted instead."""
    if rows.empty:
        return {}
    counted = newest_rows(rows)[RESULT_IDENTITY + ["run_key"]]
    joined = rows[RESULT_IDENTITY + ["run_key"]].merge(counted, on=RESULT_IDENTITY, how="left",
                                                       suffixes=("", "_counted"))
    out = {}
    for key, group in joined.groupby("run_key", sort=True):
        if not (group["run_key_counted"] == key).any():
            out[str(key)] = sorted(group["run_key_counted"].dropna().astype(str).unique())
    return out


def _warn(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)
