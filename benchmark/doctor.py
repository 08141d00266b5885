"""``python -m benchmark doctor``: check a results folder and its dataset, change nothing
(``--fix``: :func:`fix_results` rebuilds ``results.parquet`` from the run folders first).

Checks, each with what the next ``main``/``run`` would do about a problem:

- the dataset (``data/``): the manifest is readable and complete, every shard and the cases file
  match their sha256 (a bad file is rebuilt by the next build; a corrupt manifest is rebuilt from
  the verified shards), the splits file matches its checksum;
- every run folder (``runs/<key>/``): rows, volumes and summary readable (an unreadable one is
  set aside and recomputed);
- ``results.parquet`` readable (it is rebuilt from the runs after every run) and counting every
  result once (``benchmark.schema.RESULT_IDENTITY``); a run superseded by a newer run of the same
  results is listed (kept on disk, not counted);
- every trained model (``models/<name>/``): ``method.json`` readable and the method loads with
  its weights (a model that does not load must be deleted to be retrained);
- the cached validation thresholds (an unreadable one is chosen again).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from benchmark.cache import ResultsStore, duplicated_results, fix_command, superseded_runs
from benchmark.schema import normalise_rows


@dataclass
class Finding:
    """One checked item: ``ok`` or the problem and what would be done about it."""

    item: str
    ok: bool
    problem: str = ""
    remedy: str = ""


def check_dataset(data_dir: Path) -> list[Finding]:
    from datasets import storage

    manifest_path = data_dir / storage.MANIFEST_NAME
    if not data_dir.is_dir():
        return [Finding(str(data_dir), False, "no dataset yet", "the next run builds it")]
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return [Finding(str(manifest_path), False, "missing", "the next run builds the dataset (finished shards are kept)")]
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return [Finding(str(manifest_path), False, f"corrupt ({err})",
                        "the next build rebuilds it from the verified shards")]
    findings = []
    if not manifest.get("complete"):
        findings.append(Finding(str(manifest_path), False, "the build was interrupted", "the next run resumes it"))
    entries = list(manifest.get("shards", [])) + ([manifest["cases"]] if manifest.get("cases") else [])
    for entry in entries:
        verdict = storage.verify_file(data_dir / entry["file"], entry.get("sha256"))
        findings.append(Finding(str(data_dir / entry["file"]), verdict is None, verdict or "",
                                "" if verdict is None else "the next build deletes and rebuilds this file"))
    splits = data_dir / storage.SPLITS_NAME
    if manifest.get("splits_sha256"):
        good = splits.is_file() and storage.sha256_file(splits) == manifest["splits_sha256"]
        findings.append(Finding(str(splits), good, "" if good else "missing or altered",
                                "" if good else "delete the dataset folder and build again (the splits decide the data)"))
    return findings


def check_runs(store: ResultsStore) -> list[Finding]:
    findings, frames = [], []
    for key in store.run_keys():
        try:
            frames.append(store.check_run(key))
            findings.append(Finding(str(store.run_dir(key)), True))
        except ValueError as err:
            findings.append(Finding(str(store.run_dir(key)), False, str(err),
                                    "the next run sets it aside and recomputes it"))
    if frames:
        for key, newer in superseded_runs(pd.concat(frames, ignore_index=True)).items():
            findings.append(Finding(str(store.run_dir(key)), True,
                                    f"superseded by the newer run(s) {', '.join(newer)} of the same results: "
                                    "kept, not counted (delete it when not needed)"))
    if store.results_path.is_file():
        try:
            rows = pd.read_parquet(store.results_path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types
            findings.append(Finding(str(store.results_path), False, f"unreadable ({type(err).__name__})",
                                    "the next run rebuilds it from the runs"))
            return findings
        try:
            rows = normalise_rows(rows)
        except ValueError as err:
            findings.append(Finding(str(store.results_path), False, str(err),
                                    f"run `{fix_command(store.root)}` (rebuilds it from the runs)"))
            return findings
        duplicated = duplicated_results(rows)
        if duplicated:
            findings.append(Finding(str(store.results_path), False,
                                    f"counts {len(duplicated)} result set(s) more than once: " + "; ".join(duplicated),
                                    f"run `{fix_command(store.root)}` (rebuilds it from the runs, "
                                    "the newest run of each result counted)"))
        else:
            findings.append(Finding(str(store.results_path), True))
    return findings


def check_models(store: ResultsStore) -> list[Finding]:
    from methods.base import Method

    findings = []
    if not store.models_dir.is_dir():
        return findings
    for directory in sorted(p for p in store.models_dir.iterdir() if p.is_dir()):
        if directory.name.startswith(".stale-"):
            findings.append(Finding(str(directory), True, "set aside: made with other settings (kept for "
                                    "inspection; delete it when not needed)"))
            continue
        if not (directory / "method.json").is_file():
            findings.append(Finding(str(directory), False, "no method.json (training unfinished)",
                                    "the next run resumes or restarts the training"))
            continue
        try:
            Method.load(directory)
            findings.append(Finding(str(directory), True))
        except Exception as err:  # noqa: BLE001 - whatever stops a model from loading
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            findings.append(Finding(str(directory), False, message,
                                    f"delete {directory} to retrain it (the next run then trains it)"))
    return findings


def check_thresholds(store: ResultsStore) -> list[Finding]:
    findings = []
    folder = store.cache_dir / "thresholds"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            float(json.loads(path.read_text())["threshold"])
            findings.append(Finding(str(path), True))
        except (OSError, ValueError, KeyError, TypeError) as err:
            findings.append(Finding(str(path), False, f"unreadable ({err})", "the next run chooses it again"))
    return findings


def diagnose(results_dir) -> list[Finding]:
    """Every check of a results folder (see the module docstring)."""
    store = ResultsStore(results_dir)
    return [*check_dataset(store.data_dir), *check_runs(store), *check_models(store), *check_thresholds(store)]


def fix_results(results_dir) -> str:
    """Rebuild ``results.parquet`` from the run folders (``ResultsStore.rebuild_results``: the
    newest run of each result counted, unreadable run folders set aside); what was done."""
    store = ResultsStore(results_dir)
    before = None
    if store.results_path.is_file():
        try:
            before = len(pd.read_parquet(store.results_path))
        except Exception:  # noqa: BLE001 - an unreadable file is simply replaced
            before = None
    results = store.rebuild_results()
    was = "" if before is None else f" (was {before})"
    return (f"rebuilt {store.results_path}: {len(results)} rows{was} from "
            f"{results['run_key'].nunique()} runs, the newest run of each result counted")


def report(findings: list[Finding], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([asdict(f) for f in findings], indent=1)
    bad = [f for f in findings if not f.ok]
    lines = [f"checked {len(findings)} items: {len(findings) - len(bad)} fine, {len(bad)} with problems"]
    lines += [f"  PROBLEM {f.item}: {f.problem}\n          -> {f.remedy}" for f in bad]
    return "\n".join(lines)
