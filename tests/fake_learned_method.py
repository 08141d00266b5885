"""A learned method in one file: the worked example of docs/extending.md.

It "learns" the Cu probability of every voxel of the Si block as the training split's mean and
sharpens it with the stack's contrast at the highest energy. Not a good method; a complete one:
it declares its label, configs and parameters, trains through ``fit`` into the folder it is
given, saves and loads its state, and the benchmark runs it like the others once it is
registered: ``methods.registry.register("fakelearned", "fake_learned_method:FakeLearned")``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from methods.base import HyperParam, Method


class FakeLearned(Method):
    name = "fakelearned"
    label = "Fake learned (one file)"
    requires_training = True
    hyperparams = {
        "config": HyperParam("one", True, "the only config"),
        "preset": HyperParam("quick", True, "training preset (ignored: one pass)"),
        "seed": HyperParam(0, True, "unused; declared so the benchmark passes its seed"),
        "depth": HyperParam(20, True, "output depth D"),
        "gain": HyperParam(2.0, doc="how strongly the highest-energy contrast moves the prior"),
    }

    @classmethod
    def configs(cls) -> list[str]:
        return ["one"]

    def fit(self, data, val=None, out_dir=None, progress=True, resume=False, deadline=None) -> dict:
        bse, labels, _ = data.arrays("train")
        self.prior = labels.mean(axis=0).astype(np.float32)  # (D, H, W)
        self.mean_image = bse[:, -1].mean(axis=0).astype(np.float32)  # (H, W)
        self.energies_keV = np.asarray(data.energies_keV, dtype=float)
        self.image_shape = tuple(int(n) for n in bse.shape[2:])
        self.fitted = True
        summary = {"method": self.name, "n_train": int(len(bse))}
        if out_dir is not None:
            self.save(out_dir)
            (Path(out_dir) / "summary.json").write_text(json.dumps(summary))
        return summary

    def _reconstruct(self, stacks, energies_keV):
        contrast = stacks[:, -1] / np.maximum(self.mean_image, 1e-6) - 1.0  # (B, H, W)
        prob = self.prior[None] * (1.0 + self.params["gain"] * contrast[:, None])
        return np.clip(prob, 0.0, 1.0)

    def _save_state(self, directory: Path) -> None:
        np.savez(Path(directory) / "state.npz", prior=self.prior, mean_image=self.mean_image)

    def _load_state(self, directory: Path) -> None:
        with np.load(Path(directory) / "state.npz") as state:
            self.prior, self.mean_image = state["prior"], state["mean_image"]
