"""The result row: one definition used by the runner, the run cache, the reports and the tests.

A row is one method's score on one sample of one case, with how it was computed. Every
``rows.parquet`` (one run) and ``results.parquet`` (all counted runs of a results folder) holds
exactly the columns of :class:`ResultRow`, in this order. ``docs/architecture.md``'s table of
columns is generated from it (``python -m reports schema``), and a test keeps the two equal.

Doses are electrons per pixel (e-/pixel) and are named for what they are everywhere:

- ``simulated_electrons_per_pixel``: primaries simulated per pixel and energy when the stack
  was made (the dataset preset's dose);
- ``read_electrons_per_pixel``: the dose of the stack the method was given: the simulated dose,
  or a lower one drawn from it by hypergeometric thinning (the dose study).

``acquisition`` names how the stack was acquired: ``ideal`` (the paper's point beam, plane
detector, no drift or detector noise), or a level of the realism study (``datasets.realism``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd


@dataclass(frozen=True)
class ResultRow:
    """One scored sample (the columns of ``rows.parquet`` and ``results.parquet``)."""

    method: str  #: registry name of the method (``methods.registry``)
    label: str  #: the method's display name (paper name)
    config: str  #: network config (``"default"`` for methods without configs)
    variant: str  #: ablation variant (``"full"`` unless the ablation case)
    tta: bool  #: test-time averaging over flips was used
    case: str  #: benchmark case (``benchmark.cases``), e.g. ``test``, ``nanocube``, ``dose``
    sample: str  #: sample id within the case (geometry id or named position)
    simulated_electrons_per_pixel: int  #: e-/pixel simulated when the stack was made
    read_electrons_per_pixel: int  #: e-/pixel of the stack the method read (<= simulated)
    acquisition: str  #: realism level the stack was read under (``datasets.realism``); ``ideal`` elsewhere
    iou: float  #: copper IoU of the thresholded volume (paper's metric)
    class_mean_iou: float  #: mean of the copper and silicon IoUs
    mre: float  #: mean relative error of the copper volume |V_pred - V_true| / V_true
    precision: float  #: copper voxel precision
    recall: float  #: copper voxel recall
    threshold: float  #: probability threshold applied
    threshold_rule: str  #: how it was chosen: ``validation``, ``oracle`` or ``fixed-<t>``
    per_depth_iou: str  #: JSON list, copper IoU per 1 nm depth slice
    seconds_per_volume: float  #: wall seconds of reconstruction per volume
    device: str  #: where it ran (CPU model and threads, or GPU name)
    parameters: int | None  #: trainable parameters (None for methods without a network)
    macs: int | None  #: multiply-accumulates per volume (None where not counted)
    seed: int  #: training seed of the model (the preset's seed for untrained methods)
    preset: str  #: benchmark preset name
    dataset_hash: str  #: fingerprint of the dataset the case was drawn from
    git_commit: str  #: commit of the suite (``+dirty`` when the tree had changes)
    versions: str  #: JSON of library versions
    run_key: str  #: hash of everything the run's result depends on
    created_utc: str  #: ISO time the run finished


#: columns of ``rows.parquet`` / ``results.parquet``, in order
ROW_COLUMNS: list[str] = [f.name for f in fields(ResultRow)]

#: What one result is: ``results.parquet`` holds at most one row per identity. How it was
#: computed (device, CPU threads, preset wording, timing) is provenance in the row, never a
#: second result. When the same result was computed more than once (a run under a newer key,
#: e.g. after a code change), the newest run counts (``created_utc``, then ``run_key``).
RESULT_IDENTITY: list[str] = ["method", "config", "variant", "case", "sample", "read_electrons_per_pixel",
                              "acquisition", "seed", "threshold_rule"]
#: the identity of a run's row set (a run holds one row per sample)
RUN_IDENTITY: list[str] = [c for c in RESULT_IDENTITY if c != "sample"]

_INTEGER_COLUMNS = ("simulated_electrons_per_pixel", "read_electrons_per_pixel", "seed")
_NULLABLE_INTEGER_COLUMNS = ("parameters", "macs")
_FLOAT_COLUMNS = ("iou", "class_mean_iou", "mre", "precision", "recall", "threshold", "seconds_per_volume")


def normalise_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` in :data:`ROW_COLUMNS` order with stable dtypes (counts as nullable ``Int64``);
    ``ValueError`` naming the missing columns when rows do not follow the schema."""
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing} (rows written by an older version of the "
                         f"suite: rebuild them with `python -m benchmark main`)")
    extra = [c for c in rows.columns if c not in ROW_COLUMNS]
    rows = rows[ROW_COLUMNS + extra].copy()
    for column in _NULLABLE_INTEGER_COLUMNS:
        rows[column] = pd.array(rows[column], dtype="Int64")
    for column in _INTEGER_COLUMNS:
        rows[column] = rows[column].astype("int64")
    for column in _FLOAT_COLUMNS:
        rows[column] = rows[column].astype("float64")
    rows["tta"] = rows["tta"].astype(bool)
    return rows


def empty_rows() -> pd.DataFrame:
    """A frame with the schema's columns and no rows."""
    return normalise_rows(pd.DataFrame({c: [] for c in ROW_COLUMNS}))


def schema_markdown() -> str:
    """The schema as a Markdown table (column, type, meaning) for ``docs/architecture.md``."""
    import ast
    import inspect

    source = inspect.getsource(ResultRow)
    comments = {}
    for line in source.splitlines():
        if "#:" in line and ":" in line.split("#:")[0]:
            name = line.split(":")[0].strip()
            comments[name] = line.split("#:", 1)[1].strip()
    annotations = {node.target.id: ast.unparse(node.annotation).replace("|", "\\|")
                   for node in ast.walk(ast.parse(source)) if isinstance(node, ast.AnnAssign)}
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{annotations[name]}` | {comments.get(name, '')} |" for name in ROW_COLUMNS]
    return "\n".join(lines)
