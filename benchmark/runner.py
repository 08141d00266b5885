"""Runs of the benchmark: one method (one config, one variant) on one case under one preset.

A run obtains the dataset (building it under ``outputs/<preset>/data`` when missing), the model
(learned methods: loaded from ``outputs/<preset>/models/<method>-<config>/`` or trained there
first with the preset's training settings), reconstructs every sample of the case, binarises
with a threshold rule, scores every sample (``benchmark.metrics``), times the method, and writes
``runs/<run_key>/`` (rows, volumes, summary with provenance) in one atomic step. A run with a
cached key does no work; a failed run writes nothing. ``results.parquet`` counts each result
once (``benchmark.schema.RESULT_IDENTITY``: the newest run of it).

:class:`Benchmark` composes the parts that do this, each in its own module:

- ``benchmark.context``: the shared settings and the dataset (:class:`~benchmark.context.DataSource`);
- ``benchmark.planner``: which runs to make (:class:`~benchmark.planner.RunPlanner`);
- ``benchmark.models``: trained models, stale ones, fingerprints (:class:`~benchmark.models.ModelStore`);
- ``benchmark.thresholds``: thresholds per rule, cached (:class:`~benchmark.thresholds.ThresholdStore`);
- ``benchmark.executor``: run keys, the cache, computing rows (:class:`~benchmark.executor.RunExecutor`).
"""

from __future__ import annotations

import pandas as pd

from benchmark.cache import DEFAULT_OUTPUTS, ResultsStore
from benchmark.context import Context, DataSource, log_stderr
from benchmark.errors import UsageError
from benchmark.executor import RunExecutor
from benchmark.models import ModelStore
from benchmark.planner import RunPlanner
from benchmark.presets import BenchmarkPreset, get_preset
from benchmark.specs import (  # noqa: F401 - the runner's public names
    DEFAULT_THRESHOLD_RULE,
    ModelSpec,
    RunSpec,
    code_version,
    method_class,
    method_names,
    network_configs,
)
from benchmark.thresholds import ThresholdStore
from datasets.provenance import DeviceError
from datasets.provenance import check_device as check_named_device

#: the cases the preset's extra training seeds are run on (besides the stored named cases)
SEED_CASES = ("test",)


class Benchmark:
    """The benchmark under one preset, with its results folder, device and seed.

    ``results_dir`` defaults to ``outputs/<preset>/``; ``seed`` to the preset's seed (another
    seed trains its own models, in ``models/<method>-<config>-seed<N>/``). ``dataset``: an
    opened dataset to use instead of ``<results_dir>/data``. Messages go to ``log`` (stderr by
    default), progress bars to stderr. ``threads`` sets torch's CPU threads
    (``torch.set_num_threads``; on a busy machine 1 thread can be far faster); it is recorded in
    the ``device`` column (it decides CPU timings) but is no part of the run key: a run made with
    another thread count is the same result, served from the cache.

    Its parts: ``models`` (:class:`~benchmark.models.ModelStore`), ``thresholds``
    (:class:`~benchmark.thresholds.ThresholdStore`), ``planner`` and ``executor``.
    """

    def __init__(self, preset: str | BenchmarkPreset = "quick", results_dir=None, device: str = "cpu",
                 seed: int | None = None, progress: bool = True, log=log_stderr, dataset=None,
                 threads: int | None = None):
        self.preset = get_preset(preset)
        self.store = ResultsStore(results_dir if results_dir is not None else DEFAULT_OUTPUTS / self.preset.name,
                                  log=log)
        self.device = check_device(device)
        if threads is not None:
            set_threads(threads)
        self.seed = self.preset.seed if seed is None else int(seed)
        self.progress = progress
        self.log = log
        self.context = Context(self.preset, self.store, self.device, self.seed, progress, log,
                               DataSource(self.preset, self.store, self.device, progress, log, dataset))
        self.models = ModelStore(self.context)
        self.thresholds = ThresholdStore(self.context, self.models)
        self.planner = RunPlanner(self.context)
        self.executor = RunExecutor(self.context, self.models, self.thresholds)

    def dataset(self, deadline: float | None = None):
        """The preset's dataset, built (or its interrupted build resumed) when missing
        (``deadline``: see ``datasets.builder.build_dataset``)."""
        return self.context.data.get(deadline)

    def dataset_cases(self) -> list[str]:
        """Named cases stored with the dataset (from the dataset preset, before it is built)."""
        return self.context.data.cases()

    def plan(self, methods, cases, config: str | None = None, threshold_rule: str = DEFAULT_THRESHOLD_RULE,
             read_doses=None, acquisitions=None) -> list[RunSpec]:
        """The runs for every (method, case) pair (:meth:`benchmark.planner.RunPlanner.plan`)."""
        return self.planner.plan(methods, cases, config=config, threshold_rule=threshold_rule,
                                 read_doses=read_doses, acquisitions=acquisitions)

    def main_plan(self) -> list[RunSpec]:
        """The main job: every method on every case with validation thresholds, plus MED-SEM with
        the paper's oracle thresholds on nanocube and nanowire (labelled ``oracle``); the realism
        case at the preset's ``realism_levels`` (all when it names none)."""
        from methods.binarize import ORACLE_THRESHOLDS

        specs = self.plan(["all"], ["all"], threshold_rule="validation",
                          acquisitions=list(self.preset.realism_levels) or None)
        oracle_cases = [c for c in self.dataset_cases() if c in ORACLE_THRESHOLDS]
        oracle_methods = [m for m in method_names() if method_class(m).oracle_thresholds]
        if oracle_cases and oracle_methods:
            specs += self.plan(oracle_methods, oracle_cases, threshold_rule="oracle")
        return specs

    def seed_plan(self) -> list[tuple[Benchmark, RunSpec]]:
        """The preset's ``extra_seeds`` runs: every learned method's benchmarked configs (full
        variant) with each extra seed on the test split and the named cases."""
        learned = [m for m in method_names() if method_class(m).requires_training]
        known = self.planner.known_cases()
        cases = list(dict.fromkeys(c for c in (*SEED_CASES, *self.dataset_cases()) if c in known))
        plan = []
        for seed in self.preset.extra_seeds:
            if int(seed) == self.seed:
                continue
            other = self.with_seed(int(seed))
            plan += [(other, spec) for spec in other.plan(learned, cases, threshold_rule="validation")]
        return plan

    def with_seed(self, seed: int) -> Benchmark:
        """The same benchmark (results folder, dataset, device) with another training seed."""
        return Benchmark(self.preset, results_dir=self.store.root, device=self.device, seed=seed,
                         progress=self.progress, log=self.log, dataset=self.context.data.opened)

    def is_cached(self, spec: RunSpec) -> bool:
        """Whether ``spec``'s result is in the cache (its model trained and the run folder there)."""
        return self.executor.is_cached(spec)

    def run(self, spec: RunSpec) -> pd.DataFrame:
        """Rows of ``spec``: from the cache, or computed, saved and added to results.parquet."""
        return self.executor.run(spec)

    def run_all(self, specs: list[RunSpec]) -> pd.DataFrame:
        """Run (or fetch from the cache) every spec; all their rows in one frame."""
        frames = [self.run(spec) for spec in specs]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def check_device(device: str) -> str:
    """``device`` normalised after checking that torch can use it here (``datasets.provenance.check_device``);
    a bad one is the command line's usage error."""
    try:
        return check_named_device(device, backend="torch")
    except DeviceError as err:
        raise UsageError(str(err)) from err


def set_threads(threads: int) -> None:
    """torch's CPU threads (``torch.set_num_threads``); a usage error unless positive."""
    import torch

    if int(threads) < 1:
        raise UsageError(f"threads must be a positive integer, got {threads}")
    torch.set_num_threads(int(threads))


def run(method: str, case: str, preset: str = "quick", config: str | None = None, seed: int | None = None,
        device: str = "cpu", threshold_rule: str = DEFAULT_THRESHOLD_RULE, results_dir=None,
        progress: bool = True) -> pd.DataFrame:
    """Run ``method`` (or ``"all"``) on ``case`` (or ``"all"``, or a geometry file path) under
    ``preset``; returns the result rows (cached runs are reused)."""
    bench = Benchmark(preset, results_dir=results_dir, device=device, seed=seed, progress=progress)
    return bench.run_all(bench.plan(method, case, config=config, threshold_rule=threshold_rule))
