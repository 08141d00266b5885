"""Making one run: its key, the cache lookup, and on a miss the computation (reconstruct the
case, binarise, score, time) written as ``runs/<run_key>/`` in one atomic step.

The run key hashes everything the result depends on: method, parameters, variant, case (and a
custom geometry's content; the dose case's read dose), preset, seed, threshold rule, device type
(cpu or cuda), dataset hash, the code version (``benchmark.specs.code_version``) and the trained
model's files. What cannot change a result is recorded, not keyed: the CPU threads (in the
``device`` column and the summary's provenance) and the measured times.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.cache import fix_command, run_key
from benchmark.cases import CUSTOM_PREFIX, CaseData, case_label, custom_path, load_case
from benchmark.context import Context
from benchmark.models import ModelStore, reconstruct_batches
from benchmark.provenance import file_hash, provenance
from benchmark.realism import level_key
from benchmark.schema import RESULT_IDENTITY, ResultRow
from benchmark.specs import RunSpec, method_class
from benchmark.thresholds import ThresholdStore, device_type
from datasets.realism import IDEAL


@dataclass
class Scored:
    """A case reconstructed and binarised by one method, with its timing, the method's
    description (``Method.describe``) and the provenance (``benchmark.provenance.provenance``)."""

    case: CaseData
    method: object
    prob: np.ndarray
    binary: np.ndarray
    thresholds: list[float]
    timing: metrics.Timing
    info: dict
    provenance: dict


class RunExecutor:
    """Runs of one benchmark: from the cache, or computed and saved."""

    def __init__(self, context: Context, models: ModelStore, thresholds: ThresholdStore):
        self.context = context
        self.models = models
        self.thresholds = thresholds

    def run_key(self, spec: RunSpec) -> str:
        ctx = self.context
        fields = {
            "method": spec.model.method,
            "params": self.models.params(spec.model),
            "variant": spec.model.variant,
            "case": case_label(spec.case),
            "threshold_rule": spec.threshold_rule,
            "preset": ctx.preset.describe(),
            "seed": ctx.seed,
            "device": device_type(ctx.device),
            "dataset_hash": ctx.data.get().hash,
            "code": self.models.code(spec.model.method),
            "model": self.models.fingerprint(spec.model),
        }
        if spec.case.startswith(CUSTOM_PREFIX):
            fields["geometry"] = file_hash(custom_path(spec.case))
        if spec.read_electrons_per_pixel is not None:  # the dose case: one run per read dose
            fields["read_electrons_per_pixel"] = int(spec.read_electrons_per_pixel)
        if spec.acquisition is not None:  # the realism case: one run per level, keyed by its definition
            fields["acquisition"] = level_key(spec.acquisition)
        return run_key(fields)

    def is_cached(self, spec: RunSpec) -> bool:
        """Whether ``spec``'s result is in the cache (its model trained and the run folder there)."""
        if not self.models.is_trained(spec.model):
            return False
        return self.context.store.run_dir(self.run_key(spec)).exists()

    def run(self, spec: RunSpec) -> pd.DataFrame:
        """Rows of ``spec``: from the cache, or computed, saved and added to results.parquet."""
        store, log = self.context.store, self.context.log
        self.models.ensure_trained(spec.model)
        key = self.run_key(spec)
        rows = store.load_rows(key)
        if rows is not None:
            log(f"cached: {spec.describe()} -> {store.run_dir(key)}")
            self.warn_if_superseded(key, rows)
            return rows
        log(f"running: {spec.describe()}")
        scored = self.score(spec)
        rows = self.rows(spec, key, scored)
        summary = self.summary(spec, key, scored, rows)
        store.save_run(key, rows, volumes(scored), summary)
        store.add_run_results(rows)
        miou = summary["metrics"]["miou"]
        log(f"done: {spec.describe()}: mIoU {miou['mean']:.3f} "
            f"[{miou['low']:.3f}, {miou['high']:.3f}] -> {store.run_dir(key)}")
        return store.load_rows(key)

    def warn_if_superseded(self, key: str, rows: pd.DataFrame) -> None:
        """Say so when results.parquet counts a newer run of the same results than the cached run
        ``key`` (e.g. made by other code, before a revert): the newest run is what counts."""
        store = self.context.store
        if not store.results_path.is_file():
            return
        try:
            counted = pd.read_parquet(store.results_path, columns=RESULT_IDENTITY + ["run_key"])
        except Exception:  # noqa: BLE001 - an unreadable results.parquet is rebuilt by the next run
            return
        mine = counted.merge(rows[RESULT_IDENTITY].drop_duplicates(), on=RESULT_IDENTITY)
        others = sorted(set(mine["run_key"].astype(str)) - {key})
        if others:
            self.context.log(f"warning: results.parquet counts the newer run(s) {', '.join(others)} of these "
                             f"results, not this cached run {key}; to count this one, delete "
                             f"{' '.join(str(store.run_dir(k)) for k in others)} and run "
                             f"`{fix_command(store.root)}`")

    def score(self, spec: RunSpec) -> Scored:
        """The case's data reconstructed by the model, thresholded, and the method timed."""
        from methods.binarize import binarize

        ctx = self.context
        dataset = ctx.data.get()
        method = self.models.get(spec.model)
        case = load_case(spec.case, dataset, ctx.store.cache_dir, seed=ctx.seed, device=ctx.device, log=ctx.log,
                         read_electrons_per_pixel=spec.read_electrons_per_pixel, acquisition=spec.acquisition)
        prob = reconstruct_batches(ctx, method, case.bse, case.energies_keV, desc=spec.describe())
        thresholds = self.thresholds.for_run(spec, case.ids)
        binary = np.stack([binarize(p, t) for p, t in zip(prob, thresholds)])
        timing = metrics.time_inference(
            lambda batch: method.reconstruct(batch, case.energies_keV), case.bse[:1], device=ctx.device,
            repeats=ctx.preset.timing_repeats, warmup=ctx.preset.timing_warmup,
        )
        return Scored(case, method, prob, binary, thresholds, timing, method.describe(), provenance(ctx.device))

    def rows(self, spec: RunSpec, key: str, scored: Scored) -> pd.DataFrame:
        """One :class:`~benchmark.schema.ResultRow` per sample of the case."""
        ctx, case, model, info, prov = self.context, scored.case, spec.model, scored.info, scored.provenance
        common = dict(
            method=model.method, label=method_class(model.method).display_name(), config=model.config,
            variant=model.variant, tta=bool(self.models.params(model).get("tta", False)), case=case_label(spec.case),
            simulated_electrons_per_pixel=int(case.simulated_electrons_per_pixel),
            read_electrons_per_pixel=int(case.read_electrons_per_pixel), acquisition=spec.acquisition or IDEAL,
            threshold_rule=spec.threshold_rule,
            seconds_per_volume=scored.timing.seconds_per_volume, device=prov["device"],
            parameters=info.get("parameters"), macs=info.get("macs"), seed=ctx.seed, preset=ctx.preset.name,
            dataset_hash=ctx.data.get().hash, git_commit=prov["git_commit"],
            versions=json.dumps(prov["versions"], sort_keys=True), run_key=key, created_utc=prov["created_utc"],
        )
        rows = []
        for sid, pred, gt, threshold in zip(case.ids, scored.binary, case.labels, scored.thresholds):
            scores = metrics.score_volume(pred, gt)
            rows.append(asdict(ResultRow(
                **common, sample=sid, iou=scores["iou"], class_mean_iou=scores["class_mean_iou"],
                mre=scores["mre"], precision=scores["precision"], recall=scores["recall"],
                threshold=float(threshold), per_depth_iou=metrics.per_depth_json(scores["per_depth_iou"]),
            )))
        return pd.DataFrame(rows)

    def summary(self, spec: RunSpec, key: str, scored: Scored, rows: pd.DataFrame) -> dict:
        """``summary.json`` of a run: what ran, on what, with which model, its metrics and provenance."""
        ctx, model, timing = self.context, spec.model, scored.timing
        dataset = ctx.data.get()
        miou = metrics.bootstrap_mean_interval(rows["iou"], seed=ctx.seed,
                                               n_resamples=ctx.preset.bootstrap_resamples)
        return {
            "run_key": key, "method": model.method, "config": model.config, "variant": model.variant,
            "params": dict(scored.method.params), "case": case_label(spec.case),
            "case_data": scored.case.fingerprint, "threshold_rule": spec.threshold_rule,
            "thresholds": dict(zip(scored.case.ids, map(float, scored.thresholds))),
            "preset": ctx.preset.describe(), "seed": ctx.seed, "dataset_hash": dataset.hash,
            "dataset_path": str(dataset.path), "code_version": self.models.code(model.method),
            "model_dir": str(self.models.directory(model)) if scored.method.requires_training else None,
            "model_fingerprint": self.models.fingerprint(model), "model": scored.info,
            "metrics": {
                "n_samples": len(rows), "miou": miou.as_dict(), "mean_mre": _nanmean(rows["mre"]),
                "mean_precision": _nanmean(rows["precision"]), "mean_recall": _nanmean(rows["recall"]),
                "seconds_per_volume": timing.seconds_per_volume,
                "timing": {"repeats": timing.repeats, "warmup": timing.warmup,
                           "batch_size": timing.batch_size, "all_seconds": list(timing.all_seconds)},
            },
            "provenance": scored.provenance,
        }


def volumes(scored: Scored) -> dict[str, np.ndarray]:
    """``volumes.npz`` of a run: sample ids, ground truth, probabilities, masks, inputs."""
    case = scored.case
    return {
        "ids": np.asarray(case.ids),
        "gt": case.labels.astype(np.uint8),
        "prob": scored.prob.astype(np.float16),
        "binary": scored.binary,
        "bse": case.bse.astype(np.float16),
        "energies_keV": np.asarray(case.energies_keV, dtype=float),
    }


def _nanmean(values) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan
