"""The trained models of a benchmark: where each lives, whether it is trained with the current
settings (a stale one is moved aside and trained again), its fingerprint, training and loading.

A model lives in ``<results>/models/<method>-<config>[-<variant>]/`` (``-seed<N>`` appended for
a seed other than the preset's).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmark.context import Context
from benchmark.errors import BenchmarkError
from benchmark.provenance import file_hash
from benchmark.specs import ModelSpec, code_version, method_class
from datasets.budget import BudgetExhausted

MODEL_FILES_SUFFIXES = (".pt", ".safetensors", ".npz", ".npy")


class ModelStore:
    """The models of one benchmark (:class:`~benchmark.context.Context`), loaded once each."""

    def __init__(self, context: Context):
        self.context = context
        self.loaded: dict[ModelSpec, object] = {}
        self._code_versions: dict[str, str] = {}

    def directory(self, spec: ModelSpec) -> Path:
        ctx = self.context
        suffix = "" if ctx.seed == ctx.preset.seed else f"-seed{ctx.seed}"
        return ctx.store.models_dir / f"{spec.tag()}{suffix}"

    def is_trained(self, spec: ModelSpec) -> bool:
        """Whether ``spec``'s model is trained (the method decides: ``Method.is_trained``) with
        the current settings (``Method.saved_model_matches``: a model made by other training
        settings or another architecture is not reused)."""
        return self.stale_reason(spec) is None and method_class(spec.method).is_trained(self.directory(spec))

    def stale_reason(self, spec: ModelSpec) -> str | None:
        """Why the finished model in ``spec``'s folder cannot be reused (``None``: it can, or none is there)."""
        from methods.base import create

        klass, directory = method_class(spec.method), self.directory(spec)
        if not klass.requires_training or not klass.is_trained(directory):
            return None
        matches, reason = create(spec.method, device="cpu", **self.params(spec)).saved_model_matches(directory)
        return None if matches else reason

    def fingerprint(self, spec: ModelSpec) -> str:
        """Hash of a trained model's files (``"untrained"`` before training, ``"-"`` for
        methods without training)."""
        if not method_class(spec.method).requires_training:
            return "-"
        directory = self.directory(spec)
        if not self.is_trained(spec):
            return "untrained"
        files = [directory / "method.json"] + sorted(
            p for p in directory.iterdir() if p.suffix in MODEL_FILES_SUFFIXES
        )
        return file_hash(*files)

    def code(self, method: str) -> str:
        """The method's code version (``benchmark.specs.code_version``), computed once."""
        if method not in self._code_versions:
            self._code_versions[method] = code_version(method)
        return self._code_versions[method]

    def params(self, spec: ModelSpec) -> dict:
        """Hyper-parameters of ``spec``'s method: config and variant overrides; the preset's
        training preset and the seed where the method declares them; and whatever the method
        asks to match the dataset (``Method.dataset_params``, e.g. MED-SEM's PSF physics)."""
        from datasets.presets import get_preset as get_dataset_preset

        preset, klass = self.context.preset, method_class(spec.method)
        params = spec.params()
        if "preset" in klass.hyperparams:
            params["preset"] = preset.train_preset
        if "seed" in klass.hyperparams:
            params["seed"] = self.context.seed
        if "tta" in klass.hyperparams:
            params["tta"] = bool(preset.tta)
        params.update(klass.dataset_params(get_dataset_preset(preset.dataset_preset)))
        return params

    def get(self, spec: ModelSpec):
        """The ready-to-use method of ``spec``: created, loaded, or trained first."""
        if spec in self.loaded:
            return self.loaded[spec]
        klass, device = method_class(spec.method), self.context.device
        if klass.requires_training:
            method = klass.load(self.ensure_trained(spec), device=device)
            # inference-time parameters (no retraining needed, e.g. tta) follow the preset
            for key, value in self.params(spec).items():
                if key in klass.hyperparams and not klass.hyperparams[key].retrain:
                    method.params[key] = value
        else:
            method = klass(device=device, **self.params(spec))
        self.loaded[spec] = method
        return method

    def ensure_trained(self, spec: ModelSpec, deadline: float | None = None) -> Path | None:
        """Train a learned model with the preset's settings unless it is trained already;
        its directory (``None`` for methods without training). ``deadline``: stop training
        cleanly (checkpoint saved) with ``BudgetExhausted`` when it would be passed."""
        if not method_class(spec.method).requires_training:
            return None
        directory = self.directory(spec)
        stale = self.stale_reason(spec)
        if stale is not None:
            self._set_aside(directory, stale)
        if not self.is_trained(spec):
            self._train(spec, directory, deadline)
        return directory

    def _set_aside(self, directory: Path, reason: str) -> None:
        """Move a stale model to ``.stale-<name>-<n>`` (kept for inspection)."""
        n = 0
        while (aside := directory.with_name(f".stale-{directory.name}-{n}")).exists():
            n += 1
        directory.rename(aside)
        self.context.log(f"not reusing {directory}: {reason}; moved to {aside}, training again")

    def _train(self, spec: ModelSpec, directory: Path, deadline: float | None = None) -> None:
        """``Method.fit`` on the dataset, the model written to ``directory`` (resumed if begun)."""
        from methods.base import create

        ctx = self.context
        method = create(spec.method, device=ctx.device, **self.params(spec))
        resuming = (directory / "latest.pt").is_file()
        ctx.log(f"{'resuming training of' if resuming else 'training'} {spec.tag()} "
                f"(train preset '{ctx.preset.train_preset}', seed {ctx.seed}) in {directory}")
        summary = method.fit(ctx.data.get(), out_dir=directory, progress=ctx.progress, resume=True,
                             deadline=deadline) or {}
        if summary.get("reason") == "time budget":
            raise BudgetExhausted(f"training {spec.tag()} stopped by the time budget after epoch "
                                  f"{summary['interrupted_at_epoch']} of {summary['epochs']} (saved; rerun to continue)")
        if not self.is_trained(spec):
            raise BenchmarkError(f"training {spec.tag()} finished without a model in {directory}")


def reconstruct_batches(context: Context, method, bse: np.ndarray, energies_keV,
                        desc: str = "reconstructing") -> np.ndarray:
    """Probability volumes (N, D, H, W) of a batch of stacks, the preset's ``batch_size`` at a
    time, torch seeded with the benchmark's seed first."""
    import torch

    torch.manual_seed(context.seed)
    batch = context.preset.batch_size
    chunks = []
    starts = range(0, len(bse), batch)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not context.progress or len(starts) < 2,
                      file=sys.stderr, leave=False):
        chunks.append(method.reconstruct(bse[start:start + batch], energies_keV))
    return np.concatenate(chunks).astype(np.float32)
