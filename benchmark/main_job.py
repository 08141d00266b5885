"""The main job in stages, under an optional wall-clock budget: data, training, evaluation, report.

``python -m benchmark main --preset P [--time-budget SECONDS]`` runs

1. **data**: build (or resume) the preset's dataset;
2. **training**: every learned model of the plan, in the preset's ``train_order`` first, then the
   rest of the plan, the ablation's variants last;
3. **evaluation**: every run of the plan whose model is trained (test split, named cases,
   ``nebula``, then the ablation);
4. **report**: the HTML report of what exists.

With a budget each stage stops cleanly when time runs out: a shard or an epoch in progress is
finished and saved, nothing new is started, and the stages left are recorded. The status of every
stage and item goes to ``<results>/main_job.json`` (read by the report's "What ran" section), and
a rerun with the same results folder continues where the last one stopped (the dataset builder
and the training loop resume; finished runs are cached).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from datasets.budget import BudgetExhausted, TimeBudget
from datasets.files import write_json_atomic

STATUS_FILE = "main_job.json"
#: statuses of a stage item
DONE, STOPPED, NOT_STARTED, SKIPPED = "done", "stopped (time budget)", "not started (time budget)", "skipped"


@dataclass
class Item:
    stage: str
    name: str
    status: str
    seconds: float = 0.0
    note: str = ""


@dataclass
class MainJobStatus:
    preset: str
    time_budget_s: float | None
    items: list[Item] = field(default_factory=list)
    started_utc: str = ""
    seconds: float = 0.0
    complete: bool = False

    def add(self, stage: str, name: str, status: str, seconds: float = 0.0, note: str = "") -> None:
        self.items.append(Item(stage, name, status, round(seconds, 2), note))

    def to_dict(self) -> dict:
        return asdict(self)


def reserve_seconds(budget: TimeBudget, evaluation_runs: int) -> float:
    """Seconds kept for evaluation and the report when training (10 % of the budget, 20-120 s)."""
    if budget.seconds is None:
        return 0.0
    return min(120.0, max(20.0, 0.10 * budget.seconds, 2.0 * evaluation_runs))


def training_order(bench, specs) -> list:
    """The learned models of ``specs`` (ModelSpecs), the preset's ``train_order`` first, then
    the plan's order, Table 1 variants (the ablation) last."""
    from benchmark.specs import method_class

    models = []
    for spec in specs:
        if spec.model not in models and method_class(spec.model.method).requires_training:
            models.append(spec.model)
    priority = {pair: i for i, pair in enumerate(bench.preset.train_order)}

    def key(model):
        ablation = model.variant != "full"
        return (ablation, priority.get((model.method, model.config), len(priority)), models.index(model))

    return sorted(models, key=key)


def evaluation_order(specs) -> list:
    """Runs with the ablation's last (its variants are trained last)."""
    return sorted(specs, key=lambda s: (s.case == "ablation", specs.index(s)))


def run_main_job(bench, budget: TimeBudget | None = None, log=None) -> MainJobStatus:
    """Run the main job of ``bench`` (a ``benchmark.runner.Benchmark``) in stages; see the module
    docstring. Returns the status, also written to ``<results>/main_job.json``."""
    from datetime import datetime, timezone

    budget = budget or TimeBudget(None)
    job = MainJob(bench, budget, log or bench.log,
                  MainJobStatus(bench.preset.name, budget.seconds,
                                started_utc=datetime.now(timezone.utc).isoformat(timespec="seconds")))
    if not job.data():
        return job.status
    specs = bench.main_plan()
    seed_specs = bench.seed_plan()  # the preset's extra training seeds (mean and spread over seeds)
    job.training(specs, seed_specs, reserve_seconds(budget, len(specs) + len(seed_specs)))
    job.evaluation([(bench, spec) for spec in evaluation_order(specs)] + seed_specs)
    if bench.store.run_keys():  # results.parquet from the run folders, each result once (newest run)
        bench.store.rebuild_results()
    job.status.complete = all(item.status == DONE for item in job.status.items)
    job.save()
    return job.status


class MainJob:
    """The stages of one main job, recording each item in ``status`` (saved after each)."""

    def __init__(self, bench, budget: TimeBudget, log, status: MainJobStatus):
        self.bench, self.budget, self.log, self.status = bench, budget, log, status
        self.stopped: set = set()  # (seed, model) pairs whose training did not finish

    def save(self) -> None:
        self.status.seconds = round(self.budget.elapsed(), 2)
        write_json_atomic(self.bench.store.root / STATUS_FILE, self.status.to_dict())

    def data(self) -> bool:
        """Build (or resume) the dataset; ``False`` when the budget stopped it."""
        bench, tic = self.bench, time.monotonic()
        try:
            bench.dataset(deadline=self.budget.deadline(reserve=5.0))
        except BudgetExhausted as stop:
            self.status.add("data", bench.preset.dataset_preset, STOPPED, time.monotonic() - tic, str(stop))
            for stage in ("training", "evaluation"):
                self.status.add(stage, "all", NOT_STARTED)
            self.save()
            self.log(f"time budget: {stop}")
            return False
        self.status.add("data", bench.preset.dataset_preset, DONE, time.monotonic() - tic)
        self.save()
        return True

    def training(self, specs, seed_specs, reserve: float) -> None:
        """Train every learned model of the plan (in parallel processes where the preset says),
        ``reserve`` seconds kept for evaluation."""
        bench, budget = self.bench, self.budget
        jobs = [(bench, model) for model in training_order(bench, specs)]
        for other in dict.fromkeys(b for b, _ in seed_specs):
            jobs += [(other, model) for model in training_order(other, [spec for b, spec in seed_specs if b is other])]
        workers = bench.preset.train_workers if str(bench.device) == "cpu" else 1
        to_train = [(b, m) for b, m in jobs if not b.models.is_trained(m)]
        if workers > 1 and len(to_train) > 1:
            if budget.seconds is None:  # no priorities to keep: the costliest first balances the processes
                to_train.sort(key=lambda job: -_training_cost(*job))
            _train_in_parallel(bench, to_train, workers, budget.deadline(reserve), self.status, self.stopped, self.log)
            self.save()
        for owner, model in jobs:
            self._train(owner, model, reserve)

    def _train(self, owner, model, reserve: float) -> None:
        """One model of the training stage (unless trained in parallel already)."""
        name, status = _job_name(self.bench, owner, model), self.status
        if any(item.stage == "training" and item.name == name for item in status.items):
            return  # trained (or stopped) in parallel
        if owner.models.is_trained(model):
            status.add("training", name, DONE, note="trained before")
            return
        if self.budget.expired(reserve):
            status.add("training", name, NOT_STARTED)
            self.stopped.add((owner.seed, model))
            return
        tic = time.monotonic()
        try:
            owner.models.ensure_trained(model, deadline=self.budget.deadline(reserve))
            status.add("training", name, DONE, time.monotonic() - tic)
        except BudgetExhausted as stop:
            status.add("training", name, STOPPED, time.monotonic() - tic, str(stop))
            self.stopped.add((owner.seed, model))
            self.log(f"time budget: {stop}")
        self.save()

    def evaluation(self, runs) -> None:
        """Every (benchmark, run) whose model is trained; cached runs even past the budget."""
        report_reserve = 10.0 if self.budget.seconds is not None else 0.0
        for owner, spec in runs:
            name = spec.describe() + ("" if owner is self.bench else f" (seed {owner.seed})")
            if (owner.seed, spec.model) in self.stopped:
                self.status.add("evaluation", name, SKIPPED, note="its model is not trained (time budget)")
                continue
            cached = owner.is_cached(spec)
            if self.budget.expired(report_reserve) and not cached:
                self.status.add("evaluation", name, NOT_STARTED)
                continue
            tic = time.monotonic()
            owner.run(spec)
            self.status.add("evaluation", name, DONE, time.monotonic() - tic, "cached" if cached else "")
            self.save()


def _train_one(preset, results_dir, device: str, seed: int, model, deadline):
    """A worker process: train one model with one torch thread (``(status, seconds, note)``)."""
    from benchmark.runner import Benchmark
    from datasets.budget import past

    if past(deadline):
        return NOT_STARTED, 0.0, ""
    tic = time.monotonic()
    bench = Benchmark(preset, results_dir=results_dir, device=device, seed=seed, progress=False, threads=1)
    try:
        bench.models.ensure_trained(model, deadline=deadline)
    except BudgetExhausted as stop:
        return STOPPED, time.monotonic() - tic, str(stop)
    return DONE, time.monotonic() - tic, f"in a worker process (of {bench.preset.train_workers})"


def _training_cost(owner, model) -> float:
    """Multiply-accumulates per sample of a model's network (its relative training cost)."""
    from methods.base import create

    return float(create(model.method, device="cpu", **owner.models.params(model)).describe().get("macs") or 0.0)


def _job_name(bench, owner, model) -> str:
    """A training item's name: the model's tag, with its seed when not the main one."""
    return model.tag() + ("" if owner.seed == bench.seed else f" (seed {owner.seed})")


def _train_in_parallel(bench, jobs, workers: int, deadline, status, stopped, log) -> None:
    """Train ``jobs`` ((benchmark of a seed, model) pairs) in ``workers`` spawned processes, one
    torch thread each (each model's own folder; the dataset is only read), results recorded in
    submission order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    log(f"training {len(jobs)} models in {workers} processes (1 torch thread each)")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        futures = [pool.submit(_train_one, bench.preset, bench.store.root, bench.device, owner.seed, m, deadline)
                   for owner, m in jobs]
        for (owner, model), future in zip(jobs, futures):
            state, seconds, note = future.result()
            name = _job_name(bench, owner, model)
            status.add("training", name, state, seconds, note)
            if state != DONE:
                stopped.add((owner.seed, model))
                log(f"time budget: {name} {state}")
            else:
                log(f"trained {name} ({seconds:.0f} s)")


def format_status(status: MainJobStatus) -> str:
    """A few lines for the terminal: what ran and what did not."""
    lines = []
    for stage in ("data", "training", "evaluation"):
        items = [i for i in status.items if i.stage == stage]
        done = sum(i.status == DONE for i in items)
        rest = [f"{i.name}: {i.status}" for i in items if i.status != DONE]
        lines.append(f"{stage}: {done}/{len(items)} done" + (f"; {'; '.join(rest[:6])}" if rest else "")
                     + (f" (+{len(rest) - 6} more)" if len(rest) > 6 else ""))
    budget = "no time budget" if status.time_budget_s is None else f"time budget {status.time_budget_s:g} s"
    lines.append(f"{'complete' if status.complete else 'INCOMPLETE: rerun the same command to continue'} "
                 f"({status.seconds:.0f} s, {budget})")
    return "\n".join(lines)
