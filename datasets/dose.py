"""A lower beam dose from a higher one: thinning the detected counts.

Our images are simulated with exactly ``n`` primaries per pixel. Keeping ``m`` of them, drawn
without replacement, gives the detected count of the ``m``-electron image as
``Hypergeometric(k detected, n - k not, m drawn)`` given the ``n``-electron count ``k``: an exact
draw of the image at exactly ``m`` e-/pixel (:func:`thin_to_dose`; mean ``k m / n``; a primary
whose fast secondary is detected too counts twice, so counts above ``n`` are capped, a few per
mille of pixels at most). Keeping each primary independently with ``p = m / n`` instead
(:func:`thin_counts`, ``Binomial(k, p)``) gives a dose that is itself random (Binomial(n, p)
primaries), as a real beam's Poisson dwell would: variance larger by the dose's own spread.
"""

from __future__ import annotations

import numpy as np

#: the doses of the ``dose`` benchmark case (e-/pixel), those at or below the data's dose
DOSE_LEVELS = (10, 25, 50, 100, 300, 1000)


def thin_counts(counts: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """``Binomial(counts, keep)`` element-wise (``keep`` in (0, 1])."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"the kept fraction must be in (0, 1], got {keep}")
    counts = np.asarray(counts)
    if np.any(counts < 0) or not np.all(counts == np.rint(counts)):
        raise ValueError("counts must be non-negative integers")
    return rng.binomial(counts.astype(np.int64), keep) if keep < 1.0 else counts.astype(np.int64)


def thin_to_dose(counts: np.ndarray, simulated_electrons_per_pixel: int, read_electrons_per_pixel: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Counts of ``read_electrons_per_pixel`` primaries drawn without replacement from the
    ``simulated_electrons_per_pixel`` that gave ``counts`` (hypergeometric; exact, see the module
    docstring)."""
    simulated, read = simulated_electrons_per_pixel, read_electrons_per_pixel
    if not 0 < read <= simulated:
        raise ValueError(f"can only thin to a dose in (0, {simulated}] e-/pixel, got {read}")
    counts = np.asarray(counts)
    if np.any(counts < 0) or not np.all(counts == np.rint(counts)):
        raise ValueError("counts must be non-negative integers")
    good = np.minimum(counts.astype(np.int64), simulated)
    if read == simulated:
        return good
    return rng.hypergeometric(good, simulated - good, read)


def thin_yields(bse: np.ndarray, simulated_electrons_per_pixel: int, read_electrons_per_pixel: int,
                rng: np.random.Generator) -> np.ndarray:
    """Yields ``bse`` (any shape) simulated with ``simulated_electrons_per_pixel`` as if simulated
    with ``read_electrons_per_pixel`` <= it (:func:`thin_to_dose` of the counts ``bse * simulated``)."""
    counts = np.rint(np.asarray(bse, dtype=np.float64) * simulated_electrons_per_pixel)
    return (thin_to_dose(counts, simulated_electrons_per_pixel, read_electrons_per_pixel, rng)
            / read_electrons_per_pixel).astype(np.float32)


def dose_levels(simulated_electrons_per_pixel: int) -> list[int]:
    """The ``DOSE_LEVELS`` below the data's simulated dose, and that dose itself."""
    levels = [d for d in DOSE_LEVELS if d < simulated_electrons_per_pixel]
    return [*levels, int(simulated_electrons_per_pixel)]


class DoseReader:
    """Stacks read at a dataset's read dose: ``read_electrons_per_pixel`` of the
    ``simulated_electrons_per_pixel`` primaries each stack was simulated with, drawn without
    replacement (:func:`thin_to_dose`), one fixed draw per (dataset seed, key); the stored stacks
    when the doses agree."""

    def __init__(self, simulated_electrons_per_pixel: int, read_electrons_per_pixel: int, seed: int):
        if not 0 < read_electrons_per_pixel <= simulated_electrons_per_pixel:
            raise ValueError(f"read dose {read_electrons_per_pixel} e-/pixel is not in "
                             f"(0, {simulated_electrons_per_pixel}] (the simulated dose)")
        self.simulated_electrons_per_pixel = int(simulated_electrons_per_pixel)
        self.read_electrons_per_pixel = int(read_electrons_per_pixel)
        self.seed = int(seed)

    @property
    def thinned(self) -> bool:
        """Whether stacks are read below the simulated dose."""
        return self.read_electrons_per_pixel < self.simulated_electrons_per_pixel

    def simulated_counts(self, bse: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
        """Detected electrons of a stored stack: its ``counts``, else its yields times the dose."""
        if counts is None:
            return np.rint(np.asarray(bse, np.float64) * self.simulated_electrons_per_pixel)
        return np.asarray(counts)

    def read(self, bse: np.ndarray, counts: np.ndarray | None, key: tuple[int, ...]) -> np.ndarray:
        """Yields of one stored stack at the read dose (the stored yields when not thinned)."""
        if not self.thinned:
            return bse
        rng = np.random.default_rng(np.random.SeedSequence(entropy=self.seed, spawn_key=(0xD05E, *key)))
        read = self.read_electrons_per_pixel
        return (thin_to_dose(self.simulated_counts(bse, counts), self.simulated_electrons_per_pixel, read, rng)
                / read).astype(np.float32)
