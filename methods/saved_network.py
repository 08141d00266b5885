"""What a trained network leaves on disk and how it is read back: ``model.pt`` (or the training's
``best.pt``), the architecture and training data in ``method.json``, and whether a saved model
matches the current settings (:class:`SavedNetwork`, a part of ``methods.network.NetworkMethod``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from methods.checkpoints import load_checkpoint, load_model_state, save_checkpoint
from methods.train_settings import RESUMABLE_DIFFERENCES


class SavedNetwork:
    """Persistence of a ``NetworkMethod`` (it provides ``network``, ``init_network``,
    ``full_architecture``, ``train_settings``, ``params`` and ``hyperparams``)."""

    def _extra_info(self) -> dict:
        info = {"architecture": self.full_architecture()}
        if self.training_data:  # set by methods.training.train (not by training on bare arrays)
            info["training_data"] = self.training_data
        return info

    def saved_model_matches(self, directory) -> tuple[bool, str]:
        """The saved model's architecture, training settings and retraining parameters equal the
        current ones (settings that only change speed, e.g. device or AMP, are not compared)."""
        directory = Path(directory)
        try:
            info = json.loads((directory / "method.json").read_text())
            summary = json.loads((directory / "summary.json").read_text())
        except (OSError, ValueError) as err:
            return False, f"unreadable model record ({err})"
        if info.get("architecture") != json.loads(json.dumps(self.full_architecture())):
            return False, "it was built with another architecture"
        current = asdict(self.train_settings())
        saved = summary.get("settings") or {}
        changed = sorted(k for k, v in current.items()
                         if k not in RESUMABLE_DIFFERENCES | {"device"} and saved.get(k) != v)
        if changed:
            return False, f"its training settings differ ({', '.join(changed)})"
        params = {k: v for k, v in self.params.items() if self.hyperparams[k].retrain}
        saved_params = {k: summary["params"].get(k) for k in params}
        if json.loads(json.dumps(saved_params)) != json.loads(json.dumps(params)):
            return False, "its parameters differ"
        return True, ""

    @classmethod
    def is_trained(cls, directory) -> bool:
        """A finished training leaves ``method.json`` and ``summary.json`` (an interrupted one neither)."""
        return (Path(directory) / "method.json").is_file() and (Path(directory) / "summary.json").is_file()

    def _save_state(self, directory: Path) -> None:
        if self.network is None:
            raise RuntimeError(f"{self.name}: nothing to save, the network is not built")
        if self._trained_dir is not None and Path(directory).resolve() == self._trained_dir:
            return  # the training directory already holds the selected weights in best.pt
        state = {"model": self.network.state_dict(), "n_energies": int(self._n_energies)}
        save_checkpoint(state, Path(directory) / "model.pt")

    def _load_state(self, directory: Path) -> None:
        directory = Path(directory)
        path = directory / "model.pt"
        if not path.exists():
            path = directory / "best.pt" if (directory / "best.pt").exists() else directory / "latest.pt"
        ckpt = load_checkpoint(path)
        if "n_energies" not in ckpt:
            raise ValueError(f"{path}: not a saved model of this suite (no 'n_energies' entry)")
        self.init_network(int(ckpt["n_energies"]), seed=int(self.params["seed"]))
        load_model_state(self.network, ckpt["model"], path)
        self.network.to(self.device).eval()
