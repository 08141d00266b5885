"""Checks of a method's input: shape, dtype, finiteness, image size and energies."""

from __future__ import annotations

import numpy as np


def check_stacks(method, stacks, energies_keV=None) -> np.ndarray:
    """Validate a batch for ``method`` (its trained image size and energies) and return it as
    float32 (B, E, H, W); errors name the problem."""
    if hasattr(stacks, "detach"):
        stacks = stacks.detach().cpu().numpy()
    arr = np.asarray(stacks)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(
            f"{method.name}: input must have shape (B, E, H, W) or (E, H, W), got {tuple(arr.shape)}"
        )
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{method.name}: input must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{method.name}: input contains NaN or infinite values")
    n_energies = arr.shape[1]
    if method.image_shape is not None and tuple(arr.shape[2:]) != tuple(method.image_shape):
        raise ValueError(
            f"{method.name}: trained on {method.image_shape[0]} x {method.image_shape[1]} images, got "
            f"{arr.shape[2]} x {arr.shape[3]}; simulate or crop the stack to the trained size"
        )
    if energies_keV is not None:
        energies_keV = np.asarray(energies_keV, dtype=float)
        if energies_keV.shape != (n_energies,):
            raise ValueError(
                f"{method.name}: {n_energies} energy channels but energies_keV has shape {energies_keV.shape}"
            )
    if method.energies_keV is not None:
        expected = np.asarray(method.energies_keV, dtype=float)
        if n_energies != expected.size:
            raise ValueError(
                f"{method.name}: trained on {expected.size} energies, got a stack with {n_energies}"
            )
        if energies_keV is not None and not np.allclose(energies_keV, expected, atol=1e-6):
            diff = [
                (float(a), float(b)) for a, b in zip(energies_keV, expected) if abs(a - b) > 1e-6
            ]
            raise ValueError(
                f"{method.name}: stack energies differ from the trained energies at "
                f"(given keV, trained keV) = {diff}"
            )
    return arr

def energies_or_default(method, energies_keV, n_energies: int) -> np.ndarray:
    """The stack's energies: given, else the method's fitted ones, else the default list."""
    if energies_keV is not None:
        return np.asarray(energies_keV, dtype=float)
    if method.energies_keV is not None:
        return np.asarray(method.energies_keV, dtype=float)
    from datasets.scene import DEFAULT_ENERGIES_KEV

    if n_energies != len(DEFAULT_ENERGIES_KEV):
        raise ValueError(
            f"{method.name}: pass energies_keV for a stack of {n_energies} energies "
            f"(the default list has {len(DEFAULT_ENERGIES_KEV)})"
        )
    return np.asarray(DEFAULT_ENERGIES_KEV, dtype=float)
