"""Runs of the benchmark: one method (one config, one variant) on one case under one preset.

A run obtains the dataset (building it under ``outputs/<preset>/data`` when missing), the model
(learned methods: loaded from ``outputs/<preset>/models/<method>-<config>/`` or trained there
first with the preset's training settings), reconstructs every sample of the case, binarises
with a threshold rule, scores every sample (``benchmark.metrics``), times the method, and writes
``runs/<run_key>/`` (rows, volumes, summary with provenance) in one atomic step.

The run key hashes everything the result depends on: method, parameters, variant, case (and a
custom geometry's content), preset, seed, threshold rule, device type (cpu or cuda), dataset
hash, the code version (``code_version``: the method's sources, the suite modules they import, and
``benchmark/metrics.py``) and the trained model's files. What cannot change a result is recorded,
not keyed: the CPU threads (in the ``device`` column and the summary's provenance) and the measured
times. A run with a cached key does no work; a failed run writes nothing. ``results.parquet``
counts each result once (``benchmark.cache.RESULT_IDENTITY``: the newest run of it).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmark import metrics
from benchmark.cache import (
    DEFAULT_OUTPUTS,
    RESULT_IDENTITY,
    ResultsStore,
    fix_command,
    run_key,
    write_json_atomic,
)
from benchmark.cases import (
    CUSTOM_PREFIX,
    DOSE_CASE,
    DOSE_PREFIX,
    NEBULA_CASE,
    case_label,
    custom_path,
    load_case,
    named_cases,
    resolve_case,
)
from benchmark.errors import BenchmarkError, UnknownNameError, UsageError
from benchmark.presets import NO_CONFIG, BenchmarkPreset, get_preset
from benchmark.provenance import REPO_ROOT, file_hash, imported_sources, provenance, source_hash
from datasets.budget import BudgetExhausted
from methods.binarize import THRESHOLD_RULES, binarize

DEFAULT_THRESHOLD_RULE = "validation"
#: the cases the preset's extra training seeds are run on (besides the stored named cases)
SEED_CASES = ("test",)
MODEL_FILES_SUFFIXES = (".pt", ".safetensors", ".npz", ".npy")


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ModelSpec:
    """One model: a method, its network config (``"default"`` for MED-SEM) and ablation variant."""

    method: str
    config: str = NO_CONFIG
    variant: str = "full"

    def params(self) -> dict:
        params = {} if self.config == NO_CONFIG else {"config": self.config}
        variants = method_class(self.method).variants
        if self.variant not in variants:
            raise UnknownNameError(f"unknown variant '{self.variant}' of {self.method}; known: {', '.join(variants)}")
        params.update(variants[self.variant])
        return params

    def tag(self) -> str:
        parts = [self.method] + ([] if self.config == NO_CONFIG else [self.config])
        parts += [] if self.variant == "full" else [self.variant]
        return "-".join(parts)


@dataclass(frozen=True)
class RunSpec:
    """One run: a model on a case (see ``benchmark.cases``) with a threshold rule."""

    model: ModelSpec
    case: str
    threshold_rule: str = DEFAULT_THRESHOLD_RULE

    def describe(self) -> str:
        return f"{self.model.tag()} on {case_label(self.case)} ({self.threshold_rule} threshold)"


def method_names() -> list[str]:
    """Registered method names, plugins included (``methods.registry``)."""
    from methods.registry import available

    return available()


def method_class(name: str):
    """The method class registered as ``name``; ``UnknownNameError`` lists the known names."""
    from methods.registry import get

    return get(name)


def network_configs(name: str) -> list[str]:
    """The network configs a method declares (``Method.configs()``), [] for none."""
    return list(method_class(name).configs())


def code_version(name: str) -> str:
    """Hash of the sources a method's results depend on (``provenance.source_hash``).

    It covers the module of each class in the method's hierarchy down to ``Method`` (a plugin's
    own file, wherever it lives), every module of ``methods/`` and ``datasets/`` those modules
    import, transitively (``provenance.imported_sources``, read from their syntax trees), and
    what scores every run: ``methods/binarize.py`` and ``benchmark/metrics.py`` with their
    imports. The registry (``methods/registry.py``) and modules the method does not import are
    not part of it: registering a method or editing another method reruns nothing else.
    """
    from methods.base import Method

    klass = method_class(name)
    hierarchy = klass.__mro__[: klass.__mro__.index(Method) + 1]
    files = [Path(sys.modules[cls.__module__].__file__) for cls in hierarchy
             if getattr(sys.modules.get(cls.__module__), "__file__", None)]
    files += [REPO_ROOT / "methods" / "binarize.py", Path(metrics.__file__)]
    return source_hash(*imported_sources(*files))


class Benchmark:
    """The benchmark under one preset, with its results folder, device and seed.

    ``results_dir`` defaults to ``outputs/<preset>/``; ``seed`` to the preset's seed (another
    seed trains its own models, in ``models/<method>-<config>-seed<N>/``). ``dataset``: an
    opened dataset to use instead of ``<results_dir>/data``. Messages go to ``log`` (stderr by
    default), progress bars to stderr. ``threads`` sets torch's CPU threads
    (``torch.set_num_threads``; on a busy machine 1 thread can be far faster); it is recorded in
    the ``device`` column (it decides CPU timings) but is no part of the run key: a run made with
    another thread count is the same result, served from the cache.
    """

    def __init__(self, preset: str | BenchmarkPreset = "quick", results_dir=None, device: str = "cpu",
                 seed: int | None = None, progress: bool = True, log=log_stderr, dataset=None,
                 threads: int | None = None):
        self.preset = get_preset(preset)
        self.store = ResultsStore(results_dir if results_dir is not None else DEFAULT_OUTPUTS / self.preset.name,
                                  log=log)
        self.device = check_device(device)
        if threads is not None:
            import torch

            if int(threads) < 1:
                raise UsageError(f"threads must be a positive integer, got {threads}")
            torch.set_num_threads(int(threads))
        self.seed = self.preset.seed if seed is None else int(seed)
        self.progress = progress
        self.log = log
        self._dataset = dataset
        self._models: dict[ModelSpec, object] = {}
        self._code_versions: dict[str, str] = {}

    # ---------------------------------------------------------------------------- data
    def dataset(self, deadline: float | None = None):
        """The preset's dataset, built (or its interrupted build resumed) when missing
        (``deadline``: see ``datasets.builder.build_dataset``)."""
        if self._dataset is None:
            from datasets.storage import open_dataset

            data_dir = self.store.data_dir
            try:
                self._dataset = open_dataset(data_dir)
            except (FileNotFoundError, ValueError):
                from datasets.builder import build_dataset

                self.log(f"building dataset preset '{self.preset.dataset_preset}' into {data_dir}")
                build_dataset(data_dir, preset=self.preset.dataset_preset, device=self.device,
                              progress=self.progress, wait_for_lock=True,  # a concurrent run's build: reuse it
                              deadline=deadline)
                self._dataset = open_dataset(data_dir)
        return self._dataset

    def dataset_cases(self) -> list[str]:
        """Named cases stored with the dataset (from the dataset preset, before it is built)."""
        if self._dataset is not None:
            return self._dataset.cases()
        from datasets.presets import get_preset as get_dataset_preset

        return list(get_dataset_preset(self.preset.dataset_preset).cases)

    def known_cases(self) -> list[str]:
        return named_cases(self.dataset_cases())

    # ---------------------------------------------------------------------------- models
    def model_dir(self, spec: ModelSpec) -> Path:
        suffix = "" if self.seed == self.preset.seed else f"-seed{self.seed}"
        return self.store.models_dir / f"{spec.tag()}{suffix}"

    def is_trained(self, spec: ModelSpec) -> bool:
        """Whether ``spec``'s model is trained (the method decides: ``Method.is_trained``) with
        the current settings (``Method.saved_model_matches``: a model made by other training
        settings or another architecture is not reused)."""
        return self._stale_reason(spec) is None and method_class(spec.method).is_trained(self.model_dir(spec))

    def _stale_reason(self, spec: ModelSpec) -> str | None:
        """Why the finished model in ``spec``'s folder cannot be reused (``None``: it can, or none is there)."""
        from methods.base import create

        klass, directory = method_class(spec.method), self.model_dir(spec)
        if not klass.requires_training or not klass.is_trained(directory):
            return None
        matches, reason = create(spec.method, device="cpu", **self.model_params(spec)).saved_model_matches(directory)
        return None if matches else reason

    def model_fingerprint(self, spec: ModelSpec) -> str:
        """Hash of a trained model's files (``"untrained"`` before training, ``"-"`` for
        methods without training)."""
        if not method_class(spec.method).requires_training:
            return "-"
        directory = self.model_dir(spec)
        if not self.is_trained(spec):
            return "untrained"
        files = [directory / "method.json"] + sorted(
            p for p in directory.iterdir() if p.suffix in MODEL_FILES_SUFFIXES
        )
        return file_hash(*files)

    def model(self, spec: ModelSpec):
        """The ready-to-use method of ``spec``: created, loaded, or trained first."""
        if spec in self._models:
            return self._models[spec]
        klass = method_class(spec.method)
        if klass.requires_training:
            method = klass.load(self.ensure_trained(spec), device=self.device)
            # inference-time parameters (no retraining needed, e.g. tta) follow the preset
            for key, value in self.model_params(spec).items():
                if key in klass.hyperparams and not klass.hyperparams[key].retrain:
                    method.params[key] = value
        else:
            method = klass(device=self.device, **self.model_params(spec))
        self._models[spec] = method
        return method

    def ensure_trained(self, spec: ModelSpec, deadline: float | None = None) -> Path | None:
        """Train a learned model with the preset's settings unless it is trained already;
        its directory (``None`` for methods without training). ``deadline``: stop training
        cleanly (checkpoint saved) with ``BudgetExhausted`` when it would be passed."""
        if not method_class(spec.method).requires_training:
            return None
        directory = self.model_dir(spec)
        stale = self._stale_reason(spec)
        if stale is not None:  # keep it for inspection, train a new one
            n = 0
            while (aside := directory.with_name(f".stale-{directory.name}-{n}")).exists():
                n += 1
            directory.rename(aside)
            self.log(f"not reusing {directory}: {stale}; moved to {aside}, training again")
        if not self.is_trained(spec):
            self._train(spec, directory, deadline)
        return directory

    def model_params(self, spec: ModelSpec) -> dict:
        """Hyper-parameters of ``spec``'s method: config and variant overrides; the preset's
        training preset and the seed where the method declares them; and whatever the method
        asks to match the dataset (``Method.dataset_params``, e.g. MED-SEM's PSF physics)."""
        from datasets.presets import get_preset as get_dataset_preset

        klass = method_class(spec.method)
        params = spec.params()
        if "preset" in klass.hyperparams:
            params["preset"] = self.preset.train_preset
        if "seed" in klass.hyperparams:
            params["seed"] = self.seed
        if "tta" in klass.hyperparams:
            params["tta"] = bool(self.preset.tta)
        params.update(klass.dataset_params(get_dataset_preset(self.preset.dataset_preset)))
        return params

    def _train(self, spec: ModelSpec, directory: Path, deadline: float | None = None) -> None:
        """``Method.fit`` on the dataset, the model written to ``directory`` (resumed if begun)."""
        from methods.base import create

        method = create(spec.method, device=self.device, **self.model_params(spec))
        resuming = (directory / "latest.pt").is_file()
        self.log(f"{'resuming training of' if resuming else 'training'} {spec.tag()} "
                 f"(train preset '{self.preset.train_preset}', seed {self.seed}) in {directory}")
        summary = method.fit(self.dataset(), out_dir=directory, progress=self.progress, resume=True,
                             deadline=deadline) or {}
        if summary.get("reason") == "time budget":
            raise BudgetExhausted(f"training {spec.tag()} stopped by the time budget after epoch "
                                  f"{summary['interrupted_at_epoch']} of {summary['epochs']} (saved; rerun to continue)")
        if not self.is_trained(spec):
            raise BenchmarkError(f"training {spec.tag()} finished without a model in {directory}")

    # ---------------------------------------------------------------------------- reconstruction
    def reconstruct(self, method, bse: np.ndarray, energies_keV, desc: str = "reconstructing") -> np.ndarray:
        """Probability volumes (N, D, H, W) of a batch of stacks, ``batch_size`` at a time."""
        import torch

        torch.manual_seed(self.seed)
        batch = self.preset.batch_size
        chunks = []
        starts = range(0, len(bse), batch)
        for start in tqdm(starts, desc=desc, unit="batch", disable=not self.progress or len(starts) < 2,
                          file=sys.stderr, leave=False):
            chunks.append(method.reconstruct(bse[start:start + batch], energies_keV))
        return np.concatenate(chunks).astype(np.float32)

    def _threshold_dir(self) -> Path:
        return self.store.cache_dir / "thresholds"

    def validation_threshold(self, spec: ModelSpec) -> float:
        """The threshold maximising mIoU on the validation split (``methods.binarize.choose_threshold``),
        cached per model in ``cache/thresholds/``."""
        from methods.binarize import choose_threshold

        dataset = self.dataset()
        fingerprint = self.model_fingerprint(spec)
        key = run_key({"model": spec.tag(), "fingerprint": fingerprint,
                       "dataset_hash": dataset.hash, "code": self._code(spec.method), "seed": self.seed,
                       "device": _device_type(self.device)})
        path = self._threshold_dir() / f"{spec.tag()}-{key}.json"
        if path.is_file():
            try:
                return float(json.loads(path.read_text())["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                self.log(f"warning: unreadable threshold file {path}; choosing the threshold again")
        bse, labels, ids = dataset.arrays("val")
        if len(ids) == 0:
            raise BenchmarkError("the dataset has an empty validation split: use --threshold-rule fixed-0.5")
        prob = self.reconstruct(self.model(spec), bse, dataset.energies_keV, desc=f"{spec.tag()} on val")
        threshold = choose_threshold(prob, labels)
        write_json_atomic(path, {"model": spec.tag(), "threshold": threshold, "n_val": len(ids),
                                 "dataset_hash": dataset.hash, "model_fingerprint": fingerprint,
                                 "seed": self.seed, "energies_keV": [float(e) for e in dataset.energies_keV]})
        self.log(f"{spec.tag()}: threshold {threshold:.2f} chosen on {len(ids)} validation samples")
        return threshold

    def saved_threshold(self, spec: ModelSpec) -> tuple[float, dict] | None:
        """The newest validation threshold saved for this very model (same files, same seed),
        without opening the dataset; ``None`` when there is none."""
        fingerprint = self.model_fingerprint(spec)
        candidates = sorted(self._threshold_dir().glob(f"{spec.tag()}-*.json"), key=lambda p: p.stat().st_mtime,
                            reverse=True) if self._threshold_dir().is_dir() else []
        for path in candidates:
            try:
                info = json.loads(path.read_text())
                threshold = float(info["threshold"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if info.get("model") == spec.tag() and info.get("model_fingerprint") == fingerprint \
                    and info.get("seed", self.seed) == self.seed:
                return threshold, info
        return None

    def thresholds(self, spec: RunSpec, sample_ids: list[str]) -> list[float]:
        """One threshold per sample under the run's threshold rule."""
        if spec.threshold_rule == "fixed-0.5":
            return [0.5] * len(sample_ids)
        if spec.threshold_rule == "validation":
            return [self.validation_threshold(spec.model)] * len(sample_ids)
        if spec.threshold_rule == "oracle":
            from methods.binarize import oracle_threshold

            return [oracle_threshold(spec.case, sid) for sid in sample_ids]
        raise UnknownNameError(f"unknown threshold rule '{spec.threshold_rule}'; known: {', '.join(THRESHOLD_RULES)}")

    # ---------------------------------------------------------------------------- runs
    def _code(self, method: str) -> str:
        if method not in self._code_versions:
            self._code_versions[method] = code_version(method)
        return self._code_versions[method]

    def run_key(self, spec: RunSpec) -> str:
        fields = {
            "method": spec.model.method,
            "params": self.model_params(spec.model),
            "variant": spec.model.variant,
            "case": case_label(spec.case),
            "threshold_rule": spec.threshold_rule,
            "preset": self.preset.describe(),
            "seed": self.seed,
            "device": _device_type(self.device),
            "dataset_hash": self.dataset().hash,
            "code": self._code(spec.model.method),
            "model": self.model_fingerprint(spec.model),
        }
        if spec.case.startswith(CUSTOM_PREFIX):
            fields["geometry"] = file_hash(custom_path(spec.case))
        return run_key(fields)

    def is_cached(self, spec: RunSpec) -> bool:
        """Whether ``spec``'s result is in the cache (its model trained and the run folder there)."""
        if not self.is_trained(spec.model):
            return False
        return self.store.run_dir(self.run_key(spec)).exists()

    def run(self, spec: RunSpec) -> pd.DataFrame:
        """Rows of ``spec``: from the cache, or computed, saved and added to results.parquet."""
        self.ensure_trained(spec.model)
        key = self.run_key(spec)
        rows = self.store.load_rows(key)
        if rows is not None:
            self.log(f"cached: {spec.describe()} -> {self.store.run_dir(key)}")
            self._warn_if_superseded(key, rows)
            return rows
        self.log(f"running: {spec.describe()}")
        rows, volumes, summary = self._compute(spec, key)
        self.store.save_run(key, rows, volumes, summary)
        self.store.rebuild_results()
        miou = summary["metrics"]["miou"]
        self.log(f"done: {spec.describe()}: mIoU {miou['mean']:.3f} "
                 f"[{miou['low']:.3f}, {miou['high']:.3f}] -> {self.store.run_dir(key)}")
        return self.store.load_rows(key)

    def _warn_if_superseded(self, key: str, rows: pd.DataFrame) -> None:
        """Say so when results.parquet counts a newer run of the same results than the cached run
        ``key`` (e.g. made by other code, before a revert): the newest run is what counts."""
        if not self.store.results_path.is_file():
            return
        try:
            counted = pd.read_parquet(self.store.results_path, columns=RESULT_IDENTITY + ["run_key"])
        except Exception:  # noqa: BLE001 - an unreadable results.parquet is rebuilt by the next run
            return
        mine = counted.merge(rows[RESULT_IDENTITY].drop_duplicates(), on=RESULT_IDENTITY)
        others = sorted(set(mine["run_key"].astype(str)) - {key})
        if others:
            self.log(f"warning: results.parquet counts the newer run(s) {', '.join(others)} of these results, "
                     f"not this cached run {key}; to count this one, delete "
                     f"{' '.join(str(self.store.run_dir(k)) for k in others)} and run "
                     f"`{fix_command(self.store.root)}`")

    def _compute(self, spec: RunSpec, key: str):
        dataset = self.dataset()
        method = self.model(spec.model)
        case = load_case(spec.case, dataset, self.store.cache_dir, seed=self.seed, device=self.device,
                         log=self.log)
        prob = self.reconstruct(method, case.bse, case.energies_keV, desc=spec.describe())
        thresholds = self.thresholds(spec, case.ids)
        binary = np.stack([binarize(p, t) for p, t in zip(prob, thresholds)])
        timing = metrics.time_inference(
            lambda batch: method.reconstruct(batch, case.energies_keV), case.bse[:1], device=self.device,
            repeats=self.preset.timing_repeats, warmup=self.preset.timing_warmup,
        )
        info = method.describe()
        prov = provenance(self.device)
        rows = []
        for sid, pred, gt, threshold in zip(case.ids, binary, case.labels, thresholds):
            scores = metrics.score_volume(pred, gt)
            rows.append({
                "method": spec.model.method,
                "label": method_class(spec.model.method).display_name(),
                "tta": bool(self.model_params(spec.model).get("tta", False)),
                "config": spec.model.config,
                "variant": spec.model.variant,
                "case": case_label(spec.case),
                "sample": sid,
                "iou": scores["iou"],
                "class_mean_iou": scores["class_mean_iou"],
                "mre": scores["mre"],
                "precision": scores["precision"],
                "recall": scores["recall"],
                "threshold": float(threshold),
                "threshold_rule": spec.threshold_rule,
                "per_depth_iou": metrics.per_depth_json(scores["per_depth_iou"]),
                "seconds_per_volume": timing.seconds_per_volume,
                "device": prov["device"],
                "parameters": info.get("parameters"),
                "macs": info.get("macs"),
                "seed": self.seed,
                "preset": self.preset.name,
                "dataset_hash": dataset.hash,
                "git_commit": prov["git_commit"],
                "versions": json.dumps(prov["versions"], sort_keys=True),
                "run_key": key,
                "created_utc": prov["created_utc"],
            })
        rows = pd.DataFrame(rows)
        volumes = {
            "ids": np.asarray(case.ids),
            "gt": case.labels.astype(np.uint8),
            "prob": prob.astype(np.float16),
            "binary": binary,
            "bse": case.bse.astype(np.float16),
            "energies_keV": np.asarray(case.energies_keV, dtype=float),
        }
        miou = metrics.bootstrap_mean_interval(rows["iou"], seed=self.seed,
                                               n_resamples=self.preset.bootstrap_resamples)
        summary = {
            "run_key": key,
            "method": spec.model.method,
            "config": spec.model.config,
            "variant": spec.model.variant,
            "params": dict(method.params),
            "case": case_label(spec.case),
            "case_data": case.fingerprint,
            "threshold_rule": spec.threshold_rule,
            "thresholds": dict(zip(case.ids, map(float, thresholds))),
            "preset": self.preset.describe(),
            "seed": self.seed,
            "dataset_hash": dataset.hash,
            "dataset_path": str(dataset.path) if hasattr(dataset, "path") else None,
            "code_version": self._code(spec.model.method),
            "model_dir": str(self.model_dir(spec.model)) if method.requires_training else None,
            "model_fingerprint": self.model_fingerprint(spec.model),
            "model": info,
            "metrics": {
                "n_samples": len(rows),
                "miou": miou.as_dict(),
                "mean_mre": _nanmean(rows["mre"]),
                "mean_precision": _nanmean(rows["precision"]),
                "mean_recall": _nanmean(rows["recall"]),
                "seconds_per_volume": timing.seconds_per_volume,
                "timing": {"repeats": timing.repeats, "warmup": timing.warmup,
                           "batch_size": timing.batch_size, "all_seconds": list(timing.all_seconds)},
            },
            "provenance": prov,
        }
        return rows, volumes, summary

    # ---------------------------------------------------------------------------- planning
    def plan(self, methods, cases, config: str | None = None,
             threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> list[RunSpec]:
        """The runs for every (method, case) pair; ``"all"`` expands. Pairs that do not apply
        (``ablation`` for a method other than BSE-VoxNets, ``oracle`` thresholds outside MED-SEM
        on the paper's cases) are skipped with a note; an empty plan is an error."""
        methods = _expand(methods, method_names())
        cases = _expand(cases, self.known_cases())
        for name in methods:
            method_class(name)
        if threshold_rule not in THRESHOLD_RULES:
            raise UnknownNameError(f"unknown threshold rule '{threshold_rule}'; known: {', '.join(THRESHOLD_RULES)}")
        resolved = []
        for case in (resolve_case(c, self.dataset_cases()) for c in cases):
            if case == DOSE_CASE:  # the dose study: one case per dose level
                resolved += [f"{DOSE_PREFIX}{n}" for n in self._dose_levels()]
            elif case not in resolved:
                resolved.append(case)
        specs, skipped = [], []
        if NEBULA_CASE in resolved and not self._nebula_applies():
            resolved.remove(NEBULA_CASE)
            skipped.append(f"the {NEBULA_CASE} case (the dataset's energies are not Nebula's 0.5-10 keV)")
        for case in resolved:
            for name in methods:
                applies, reason = method_class(name).applies(case, threshold_rule)
                if not applies:
                    skipped.append(f"{name} on {case_label(case)} ({reason})")
                    continue
                for model in self._models_for(name, case, config):
                    specs.append(RunSpec(model, case, threshold_rule))
        for note in skipped:
            self.log(f"skipped: {note}")
        if not specs:
            raise BenchmarkError("nothing to run: " + "; ".join(skipped))
        return specs

    def _dose_levels(self) -> list[int]:
        """The ``dose`` case's levels: ``DOSE_LEVELS`` below the top dose of its data (the dose
        study's own, else the stored dose), the dataset's own dose (what every other case is read
        at) and the top dose."""
        from datasets.dose import dose_levels

        data = self.dataset()
        top = getattr(data, "dose_study_electrons_per_pixel", None) or \
            int(getattr(data, "stored_electrons_per_pixel", data.electrons_per_pixel))
        return sorted(set(dose_levels(int(top))) | {int(data.electrons_per_pixel)})

    def _nebula_applies(self) -> bool:
        from datasets.nebula_reference import SI_ONLY, load_reference

        ours = np.asarray(self.dataset().energies_keV, dtype=float)
        theirs = load_reference(SI_ONLY).energies_keV
        return ours.shape == theirs.shape and bool(np.allclose(ours, theirs))

    def _models_for(self, name: str, case: str, config: str | None) -> list[ModelSpec]:
        known = network_configs(name)
        if not known:
            if config not in (None, NO_CONFIG):
                self.log(f"note: {name} has no network configs; --config {config} ignored for it")
            configs = [NO_CONFIG]
        elif config is not None:
            if config not in known:
                raise UnknownNameError(f"unknown config '{config}' for {name}; known configs: {', '.join(known)}")
            configs = [config]
        elif case == "ablation":
            configs = [self.preset.ablation_config]
        else:
            configs = list(self.preset.configs.get(name) or known[:1])  # the preset's, else the smallest
        variants = list(method_class(name).variants) if case == "ablation" else ["full"]
        return [ModelSpec(name, c, v) for c in configs for v in variants]

    def run_all(self, specs: list[RunSpec]) -> pd.DataFrame:
        """Run (or fetch from the cache) every spec; all their rows in one frame."""
        frames = [self.run(spec) for spec in specs]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def with_seed(self, seed: int) -> Benchmark:
        """The same benchmark (results folder, dataset, device) with another training seed."""
        other = Benchmark(self.preset, results_dir=self.store.root, device=self.device, seed=seed,
                          progress=self.progress, log=self.log, dataset=self._dataset)
        return other

    def seed_plan(self) -> list[tuple[Benchmark, RunSpec]]:
        """The preset's ``extra_seeds`` runs: every learned method's benchmarked configs (full
        variant) with each extra seed on the test split and the named cases."""
        learned = [m for m in method_names() if method_class(m).requires_training]
        cases = [c for c in (*SEED_CASES, *self.dataset_cases()) if c in self.known_cases()]
        plan = []
        for seed in self.preset.extra_seeds:
            if int(seed) == self.seed:
                continue
            other = self.with_seed(int(seed))
            plan += [(other, spec) for spec in other.plan(learned, list(dict.fromkeys(cases)),
                                                          threshold_rule="validation")]
        return plan

    def main_plan(self) -> list[RunSpec]:
        """The main job: every method on every case with validation thresholds, plus MED-SEM with
        the paper's oracle thresholds on nanocube and nanowire (labelled ``oracle``)."""
        specs = self.plan(["all"], ["all"], threshold_rule="validation")
        from methods.binarize import ORACLE_THRESHOLDS

        oracle_cases = [c for c in self.dataset_cases() if c in ORACLE_THRESHOLDS]
        oracle_methods = [m for m in method_names() if method_class(m).oracle_thresholds]
        if oracle_cases and oracle_methods:
            specs += self.plan(oracle_methods, oracle_cases, threshold_rule="oracle")
        return specs


def check_device(device: str) -> str:
    """``device`` as a string after checking that torch knows it and, for CUDA, that a GPU exists."""
    from datasets.cli_errors import UsageError as DeviceError
    from datasets.cli_errors import check_torch_device

    try:
        return check_torch_device(device)
    except DeviceError as err:
        raise UsageError(str(err)) from err


def _expand(names, known: list[str]) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for name in names:
        for item in (known if name == "all" else [name]):
            if item not in out:
                out.append(item)
    return out


def _device_type(device: str) -> str:
    return str(device).split(":")[0]


def _nanmean(values) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def run(method: str, case: str, preset: str = "quick", config: str | None = None, seed: int | None = None,
        device: str = "cpu", threshold_rule: str = DEFAULT_THRESHOLD_RULE, results_dir=None,
        progress: bool = True) -> pd.DataFrame:
    """Run ``method`` (or ``"all"``) on ``case`` (or ``"all"``, or a geometry file path) under
    ``preset``; returns the result rows (cached runs are reused)."""
    bench = Benchmark(preset, results_dir=results_dir, device=device, seed=seed, progress=progress)
    return bench.run_all(bench.plan(method, case, config=config, threshold_rule=threshold_rule))

