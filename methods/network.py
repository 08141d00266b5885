"""``NetworkMethod``: what the learned methods share (build, train, save/load, batched inference).

BSE-VoxNets (``methods/bsevoxnets.py``) and the MONAI 3D U-Net (``methods/unet3d.py``) subclass
it, each declaring its network configs (``CONFIGS``) and ``build_network``.
"""

from __future__ import annotations

import tempfile
from abc import abstractmethod
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.errors import look_up
from datasets.protocol import Dataset
from datasets.realism import AUGMENTATIONS
from datasets.splits import split_energies
from methods import symmetry
from methods.base import HyperParam, Method
from methods.complexity import count_macs, count_parameters
from methods.saved_network import SavedNetwork
from methods.training import TRAIN_PRESETS, TrainSettings, _predict_logits, train_on_splits
from methods.training import train as train_dataset


class PerEnergyNormalised(nn.Module):
    """``net((x - mean_e) / std_e)``: each energy channel standardised with the mean and standard
    deviation of the training split (buffers: saved with the weights, applied at inference)."""

    DESCRIPTION = "per-energy mean/std of the training split"

    def __init__(self, net: nn.Module, n_energies: int):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.zeros(n_energies))
        self.register_buffer("std", torch.ones(n_energies))

    @torch.no_grad()
    def set_statistics(self, stacks: torch.Tensor) -> None:
        """From training stacks (N, E, H, W)."""
        x = stacks.double().transpose(0, 1).reshape(stacks.shape[1], -1)
        self.mean.copy_(x.mean(1).float())
        self.std.copy_(x.std(1).clamp_min(1e-6).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean[:, None, None]) / self.std[:, None, None])


class NetworkMethod(SavedNetwork, Method):
    """Shared machinery of the learned methods: build, train, save/load, batched inference."""

    requires_training = True
    #: training hyper-parameters common to both networks (None = take it from the preset)
    training_hyperparams = {
        "depth": HyperParam(20, True, "output depth layers D over the Si block"),
        "preset": HyperParam("quick", True, "training preset: smoke | quick | standard | paper | paper-gpu"),
        "epochs": HyperParam(None, True, "number of epochs (None: the preset's)"),
        "lr": HyperParam(None, True, "initial AdamW learning rate (None: the preset's)"),
        "weight_decay": HyperParam(None, True, "AdamW weight decay (None: the preset's)"),
        "lam": HyperParam(None, True, "WBCE weight lambda of the Cu term, eq. 1 (None: preset's)"),
        "batch_size": HyperParam(None, True, "training batch size (None: the preset's)"),
        "seed": HyperParam(0, True, "seed of the weight init and the shuffling"),
        "tta": HyperParam(False, False, "test-time averaging over the scene's 8 symmetries (8x the inference)"),
        "augment_acquisition": HyperParam(None, True, "image degradations as training augmentation: None | "
                                                      "'realism' (datasets.realism; None: the preset's)"),
    }
    #: the robust twin of a model: trained with the realism study's image degradations as
    #: augmentation (scored beside the ideal-trained model on the ``realism`` case)
    training_variants = {"robust": {"augment_acquisition": "realism"}}

    def __init__(self, device: str = "cpu", **params):
        super().__init__(device=device, **params)
        self.network: nn.Module | None = None
        self._n_energies: int | None = None
        self._trained_dir: Path | None = None
        #: what :func:`methods.training.train` trained on (``{"electrons_per_pixel": ...}``), saved in method.json
        self.training_data: dict | None = None
        self._size_cache: tuple | None = None  # (key, parameters, macs) of describe()
        look_up("training preset", self.params["preset"], TRAIN_PRESETS)
        if self.params.get("augment_acquisition") is not None:
            look_up("acquisition augmentation", self.params["augment_acquisition"], dict.fromkeys(AUGMENTATIONS))

    # -------------------------------------------------------------- for subclasses
    @abstractmethod
    def build_network(self, n_energies: int) -> nn.Module:
        """The network for ``n_energies`` input images; logits (B, D, H, W)."""

    # -------------------------------------------------------------- training
    def train_settings(self) -> TrainSettings:
        """The preset's settings with this method's non-None overrides and device."""
        settings = TRAIN_PRESETS[self.params["preset"]]
        overrides = {k: self.params[k] for k in ("epochs", "lr", "weight_decay", "lam", "batch_size")
                     if self.params.get(k) is not None}
        if self.params.get("augment_acquisition") is not None:
            overrides["acquisition_augment"] = self.params["augment_acquisition"]
        return replace(settings, **overrides, seed=int(self.params["seed"]), device=self.device)

    def init_network(self, n_energies: int, seed: int = 0) -> nn.Module:
        """(Re)build the network with weights drawn from ``seed`` (global RNG left untouched),
        behind the per-energy input normalisation (statistics set by the training loop)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.build_network(n_energies)
            self.network = PerEnergyNormalised(net, n_energies) if self.params.get("normalise_inputs") else net
        self._n_energies = n_energies
        return self.network

    def architecture(self) -> dict:
        """What defines the network's layers (subclasses: their config), saved in method.json."""
        return {}

    def full_architecture(self) -> dict:
        """``architecture()`` with what every network shares (the input normalisation)."""
        return {**self.architecture(),
                "input": PerEnergyNormalised.DESCRIPTION if self.params.get("normalise_inputs") else "as simulated"}

    def fit(self, train, val=None, out_dir=None, progress: bool = True, resume: bool = False,
            deadline: float | None = None) -> dict:
        """Train with ``methods.training``. ``train``: a dataset (with ``split()``: trained on its
        train split, selected on its val split) or a torch Dataset of {"bse", "label"} dicts with
        ``val`` (``deadline``: see :func:`methods.training.train_on_splits`)."""
        if val is None and isinstance(train, Dataset) and out_dir is not None:
            return train_dataset(self, train, out_dir, self.train_settings(), progress=progress, resume=resume,
                                 deadline=deadline)
        energies = split_energies(train)
        if energies is None:
            energies = _default_energies(train)
        if out_dir is None:
            with tempfile.TemporaryDirectory(prefix=f"{self.name}-train-") as tmp:
                summary = train_on_splits(self, train, val, tmp, self.train_settings(),
                                          progress=progress, energies_keV=energies, deadline=deadline)
                self._trained_dir = None
                return summary
        return train_on_splits(self, train, val, out_dir, self.train_settings(),
                               progress=progress, resume=resume, energies_keV=energies, deadline=deadline)

    # -------------------------------------------------------------- inference
    def _reconstruct(self, stacks: np.ndarray, energies_keV: np.ndarray) -> np.ndarray:
        if self.network is None:
            raise RuntimeError(f"{self.name}: no network weights; fit() or load() first")
        if stacks.shape[1] != self._n_energies:
            raise ValueError(f"{self.name}: network takes {self._n_energies} energies, got {stacks.shape[1]}")
        net = self.network.to(self.device)
        settings = self.train_settings()

        def probabilities(x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(_predict_logits(net, x, self.device, 64, amp=settings.amp,
                                                 amp_dtype=settings.amp_dtype))

        x = torch.from_numpy(stacks)
        if self.params.get("tta"):
            return symmetry.symmetric_average(probabilities, x).numpy()
        return probabilities(x).numpy()

    def describe(self) -> dict:
        """Adds ``parameters`` and ``macs`` (per sample, 20x20 images, this method's energies)."""

        info = super().describe()
        n_energies = self._n_energies or (len(self.energies_keV) if self.energies_keV is not None else 20)
        key = (n_energies, tuple(sorted((k, str(v)) for k, v in self.params.items())))
        if self._size_cache is None or self._size_cache[0] != key:
            with torch.device("meta"):
                net = self.build_network(n_energies)
            self._size_cache = (key, count_parameters(net), count_macs(net, (1, n_energies, 20, 20)))
        info["parameters"], info["macs"] = self._size_cache[1], self._size_cache[2]
        return info


def _default_energies(split):
    """The default energies when a split of that many energies records none, else None."""
    from datasets.scene import DEFAULT_ENERGIES_KEV

    n_energies = len(split[0]["bse"])
    return np.asarray(DEFAULT_ENERGIES_KEV, float) if n_energies == len(DEFAULT_ENERGIES_KEV) else None
