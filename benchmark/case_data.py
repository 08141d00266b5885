"""What a case's data are (:class:`CaseData`) and the simulator settings of a dataset that a case
simulating its own stacks uses (:func:`simulation_settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datasets.physics import PhysicsConfig


@dataclass
class CaseData:
    """The inputs and ground truth of one case: ``bse`` (N, E, H, W), ``labels`` (N, D, H, W),
    and the doses (e-/pixel) the stacks were simulated at and are read at (``bse``'s)."""

    name: str
    ids: list[str]
    bse: np.ndarray
    labels: np.ndarray
    energies_keV: np.ndarray
    simulated_electrons_per_pixel: int
    read_electrons_per_pixel: int
    fingerprint: dict = field(default_factory=dict)  # what identifies the data beyond the dataset hash


def simulation_settings(dataset) -> dict:
    """The dataset's simulator settings a custom geometry is simulated with. The dict is hashed
    into the cached stack's file name: its keys are that file format (``electrons_per_pixel``:
    the simulated dose)."""
    settings = dataset.meta.get("settings", {})
    return {
        "energies_keV": [float(e) for e in dataset.energies_keV],
        "electrons_per_pixel": int(dataset.simulated_electrons_per_pixel),
        "cutoff_eV": float(settings.get("cutoff_eV", 50.0)),
        "physics": PhysicsConfig.from_record(dataset.meta.get("physics")).names(),
    }
