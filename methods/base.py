"""The shared method interface (in the spirit of DIVal's ``Reconstructor``).

A method turns a batch of multi-energy BSE stacks ``(B, E, H, W)`` into a Cu probability
volume ``(B, D, H, W)`` in [0, 1] over the Si block (D = 20 for the paper scene). Turning the
probability into a binary volume is a separate step (``methods.binarize``).

Adding a method: a ``Method`` subclass in your own module, registered from there
(``methods.registry``: an entry point, ``BSE_BENCH_PLUGINS`` or ``register``); nothing in the
suite is edited (docs/extending.md). The benchmark reads everything else from the class:
``label``, ``configs()``, ``variants``, ``applies()``, ``dataset_params()``, ``fit()`` and
``is_trained()``. The registry's functions are re-exported here for code that imports them
from ``methods.base``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datasets.errors import unknown_name
from datasets.files import write_text_atomic
from methods.inputs import check_stacks, energies_or_default
from methods.registry import REGISTRY, available, create, get, label_of, register

__all__ = ["REGISTRY", "HyperParam", "Method", "available", "create", "get", "label_of", "register"]


@dataclass(frozen=True)
class HyperParam:
    """A declared hyper-parameter: default value, whether changing it needs retraining, doc."""

    default: Any
    retrain: bool = False
    doc: str = ""


class MethodDeclarations:
    """What a method declares about itself at class level, read by the benchmark without an
    instance: name and label, hyper-parameters, configs, variants, where it applies."""

    name: ClassVar[str] = "method"
    #: the name in tables and figures (written into every result row); default: ``name``
    label: ClassVar[str] = ""
    requires_training: ClassVar[bool] = False
    hyperparams: ClassVar[dict[str, HyperParam]] = {}
    #: ablation variants (paper Table 1 style): variant name -> hyper-parameter overrides; a
    #: method with more than ``full`` takes part in the ``ablation`` case
    variants: ClassVar[dict[str, dict[str, Any]]] = {"full": {}}
    #: variants trained otherwise (same network, other training), e.g. ``robust``: variant name ->
    #: hyper-parameter overrides; not part of the ablation
    training_variants: ClassVar[dict[str, dict[str, Any]]] = {}
    #: whether the paper's oracle thresholds (MED-SEM's, Tables 3-4) apply to this method
    oracle_thresholds: ClassVar[bool] = False

    @classmethod
    def display_name(cls) -> str:
        return cls.label or cls.name

    @classmethod
    def configs(cls) -> list[str]:
        """Network configs (sizes) a learned method offers, smallest first; ``[]``: none."""
        return []

    @classmethod
    def applies(cls, case: str, threshold_rule: str) -> tuple[bool, str]:
        """Whether the method takes part in ``case`` under ``threshold_rule``, and why not."""
        if case == "ablation" and len(cls.variants) <= 1:
            return False, f"{cls.name} declares no ablation variants"
        if threshold_rule == "oracle":
            from methods.binarize import ORACLE_THRESHOLDS

            if not cls.oracle_thresholds:
                return False, f"the paper's oracle thresholds are MED-SEM's, not {cls.name}'s"
            if case not in ORACLE_THRESHOLDS:
                return False, f"oracle thresholds exist for {'/'.join(ORACLE_THRESHOLDS)} only"
        return True, ""

    @classmethod
    def dataset_params(cls, dataset_preset) -> dict:
        """Hyper-parameters that make the method match a dataset preset
        (``datasets.presets.DatasetPreset``), e.g. MED-SEM's PSF physics; default none."""
        return {}

    @classmethod
    def is_trained(cls, directory) -> bool:
        """Whether ``directory`` holds a finished model (always true without training)."""
        return not cls.requires_training or (Path(directory) / "method.json").is_file()



class Method(MethodDeclarations, ABC):
    """Base class of every reconstruction method.

    Subclasses set ``name``, ``requires_training`` and ``hyperparams`` and implement
    ``_reconstruct``; learned methods also implement ``fit``, ``_save_state`` and
    ``_load_state``. Constructor arguments are exactly the declared hyper-parameters plus
    ``device``.
    """

    def __init__(self, device: str = "cpu", **params):
        unknown = sorted(set(params) - set(self.hyperparams))
        if unknown:
            raise unknown_name(f"parameter(s) of method '{self.name}'", ", ".join(unknown), sorted(self.hyperparams))
        self.params = {k: hp.default for k, hp in self.hyperparams.items()}
        self.params.update(params)
        self.device = str(device)
        #: energies (keV) the method was fitted/calibrated for; None = accepts any.
        self.energies_keV: np.ndarray | None = None
        #: lateral image size (H, W) a learned method was trained on; None = accepts any.
        self.image_shape: tuple[int, int] | None = None
        self.depth: int = int(self.params.get("depth", 20))
        self.fitted = not self.requires_training

    # ------------------------------------------------------------------ public API
    def reconstruct(self, stacks, energies_keV=None) -> np.ndarray:
        """Reconstruct a batch: ``stacks`` (B, E, H, W) or (E, H, W) -> (B, D, H, W) float32 in [0, 1].

        ``energies_keV`` (E,) are the beam energies of the stack channels; they must match the
        energies a trained method was fitted on.
        """
        arr = check_stacks(self, stacks, energies_keV)
        if self.requires_training and not self.fitted:
            raise RuntimeError(
                f"method '{self.name}' needs training first: run `python -m methods train --method "
                f"{self.name}` or call fit()/load()"
            )
        out = np.asarray(self._reconstruct(arr, energies_or_default(self, energies_keV, arr.shape[1])))
        if out.shape != (arr.shape[0], self.depth, arr.shape[2], arr.shape[3]):
            raise AssertionError(
                f"{self.name} returned shape {out.shape}, expected {(arr.shape[0], self.depth, *arr.shape[2:])}"
            )
        return np.clip(out.astype(np.float32, copy=False), 0.0, 1.0)

    def fit(self, data, val=None, out_dir=None, progress: bool = True, resume: bool = False,
            deadline: float | None = None) -> dict:
        """Train or calibrate. ``data``: a dataset (``datasets.storage``, with ``split()``) or a
        train split (then ``val`` selects); ``out_dir``: where a learned method writes its model
        (``resume`` continues there); ``deadline``: ``time.monotonic()`` by which to stop cleanly.
        Classical methods: a no-op. Returns a summary dict."""
        self.fitted = True
        return {}

    def save(self, directory) -> Path:
        """Write ``method.json`` (name, params, energies) and the method's state to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        info = {
            "method": self.name,
            "params": self.params,
            "energies_keV": None if self.energies_keV is None else [float(e) for e in self.energies_keV],
            "depth": self.depth,
            "fitted": self.fitted,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            **self._extra_info(),
        }
        self._save_state(directory)
        # method.json last and atomically: its presence marks a complete save
        write_text_atomic(directory / "method.json", json.dumps(info, indent=2, default=_jsonable), fsync=False)
        return directory

    @classmethod
    def load(cls, directory, device: str = "cpu") -> Method:
        """Load a method saved by ``save``; errors name a missing or corrupt file."""
        directory = Path(directory)
        info_path = directory / "method.json"
        if not info_path.exists():
            raise FileNotFoundError(f"no saved method in {directory} (missing method.json)")
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"corrupt {info_path}: {err}") from err
        missing = [key for key in ("method", "params") if key not in info] if isinstance(info, dict) else ["method", "params"]
        if missing:
            raise ValueError(f"corrupt {info_path}: missing entries {missing}")
        klass = get(info["method"]) if cls is Method else cls
        if klass.name != info["method"]:
            raise ValueError(f"{directory} holds method '{info['method']}', not '{klass.name}'")
        method = klass(device=device, **info["params"])
        energies = info.get("energies_keV")
        method.energies_keV = None if energies is None else np.asarray(energies, dtype=float)
        shape = info.get("image_shape")
        method.image_shape = None if shape is None else tuple(int(n) for n in shape)
        method._load_state(directory)
        method.fitted = bool(info.get("fitted", True))
        return method

    def describe(self) -> dict:
        """Name, parameters and (for networks) size figures, for listings and result rows."""
        return {"method": self.name, "params": dict(self.params), "device": self.device}

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _reconstruct(self, stacks: np.ndarray, energies_keV: np.ndarray) -> np.ndarray:
        """(B, E, H, W) float32, validated -> (B, D, H, W) probabilities."""

    def _save_state(self, directory: Path) -> None:  # classical methods have no state
        return None

    def _extra_info(self) -> dict:
        """Entries added to ``method.json`` (e.g. a network's architecture)."""
        return {}

    def saved_model_matches(self, directory) -> tuple[bool, str]:
        """Whether the model saved in ``directory`` was made with this method's current settings
        (a learned method compares what decides its weights); ``(False, reason)`` otherwise."""
        return True, ""

    def _load_state(self, directory: Path) -> None:
        return None

def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)
