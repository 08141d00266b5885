"""Binarisation thresholds: one per sample of a run, under the run's threshold rule.

``validation`` thresholds maximise mIoU on the validation split and are cached per model in
``<results>/cache/thresholds/<model tag>-<key>.json``; ``oracle`` thresholds are the paper's
(``methods.binarize.oracle_threshold``); ``fixed-0.5`` is 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.cache import run_key
from benchmark.context import Context
from benchmark.errors import BenchmarkError
from benchmark.models import ModelStore, reconstruct_batches
from benchmark.specs import ModelSpec, RunSpec
from datasets.errors import unknown_name
from datasets.files import write_json_atomic


def device_type(device: str) -> str:
    """``cpu`` or ``cuda`` (what a run key records of the device)."""
    return str(device).split(":")[0]


class ThresholdStore:
    """The thresholds of one benchmark's models."""

    def __init__(self, context: Context, models: ModelStore):
        self.context = context
        self.models = models

    @property
    def folder(self) -> Path:
        return self.context.store.cache_dir / "thresholds"

    def for_run(self, spec: RunSpec, sample_ids: list[str]) -> list[float]:
        """One threshold per sample under the run's threshold rule."""
        from methods.binarize import THRESHOLD_RULES

        if spec.threshold_rule == "fixed-0.5":
            return [0.5] * len(sample_ids)
        if spec.threshold_rule == "validation":
            return [self.validation(spec.model)] * len(sample_ids)
        if spec.threshold_rule == "oracle":
            from methods.binarize import oracle_threshold

            return [oracle_threshold(spec.case, sid) for sid in sample_ids]
        raise unknown_name("threshold rule", spec.threshold_rule, THRESHOLD_RULES)

    def validation(self, spec: ModelSpec) -> float:
        """The threshold maximising mIoU on the validation split (``methods.binarize.choose_threshold``),
        cached per model."""
        from methods.binarize import choose_threshold

        ctx = self.context
        dataset = ctx.data.get()
        fingerprint = self.models.fingerprint(spec)
        key = run_key({"model": spec.tag(), "fingerprint": fingerprint,
                       "dataset_hash": dataset.hash, "code": self.models.code(spec.method), "seed": ctx.seed,
                       "device": device_type(ctx.device)})
        path = self.folder / f"{spec.tag()}-{key}.json"
        if path.is_file():
            try:
                return float(json.loads(path.read_text())["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                ctx.log(f"warning: unreadable threshold file {path}; choosing the threshold again")
        bse, labels, ids = dataset.arrays("val")
        if len(ids) == 0:
            raise BenchmarkError("the dataset has an empty validation split: use --threshold-rule fixed-0.5")
        prob = reconstruct_batches(ctx, self.models.get(spec), bse, dataset.energies_keV,
                                   desc=f"{spec.tag()} on val")
        threshold = choose_threshold(prob, labels)
        write_json_atomic(path, {"model": spec.tag(), "threshold": threshold, "n_val": len(ids),
                                 "dataset_hash": dataset.hash, "model_fingerprint": fingerprint,
                                 "seed": ctx.seed, "energies_keV": [float(e) for e in dataset.energies_keV]})
        ctx.log(f"{spec.tag()}: threshold {threshold:.2f} chosen on {len(ids)} validation samples")
        return threshold

    def saved(self, spec: ModelSpec) -> tuple[float, dict] | None:
        """The newest validation threshold saved for this very model (same files, same seed),
        without opening the dataset; ``None`` when there is none."""
        seed = self.context.seed
        fingerprint = self.models.fingerprint(spec)
        candidates = sorted(self.folder.glob(f"{spec.tag()}-*.json"), key=lambda p: p.stat().st_mtime,
                            reverse=True) if self.folder.is_dir() else []
        for path in candidates:
            try:
                info = json.loads(path.read_text())
                threshold = float(info["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if info.get("model") == spec.tag() and info.get("model_fingerprint") == fingerprint \
                    and info.get("seed", seed) == seed:
                return threshold, info
        return None
