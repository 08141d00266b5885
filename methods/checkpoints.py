"""Checkpoints of the training loop: atomic saves, loading with clear errors, RNG states.

``latest.pt`` / ``best.pt`` hold the model, optimizer, scheduler and AMP-scaler states, the epoch,
every random generator's state and the run config, so a run resumes bit for bit.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.files import atomic_path


def save_checkpoint(obj, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (``datasets.files.atomic_path``; not flushed to disk:
    a checkpoint is written every epoch)."""
    with atomic_path(path, fsync=False) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path) -> dict:
    """``torch.load(weights_only=True)`` with a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / garbage files
        # torch's own message may advise weights_only=False: never to be followed for others' files
        raise ValueError(f"corrupt checkpoint {path} ({type(err).__name__}): it cannot be loaded as plain "
                         "tensors; delete it (and best.pt) to train again") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"corrupt checkpoint {path}: not a training checkpoint (no 'model' entry)")
    return ckpt


def load_model_state(net: nn.Module, state: dict, source) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {source} does not match this network: {err}") from err


def rng_state(generator: torch.Generator) -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"],
        "gauss": np_state["gauss"],
    })
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
