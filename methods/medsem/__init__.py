"""MED-SEM baseline: simulator-derived PSFs, non-negative layer separation, bounded deconvolution.

``methods.get("medsem")`` -> :class:`MedSem`. Speed figure: ``python -m methods.medsem bench``.
"""

from methods.medsem.method import MedSem
from methods.medsem.operator import LayerBlurOperator, solve_bounded_least_squares
from methods.medsem.psf import LayerPsf, fit_layer_psf, psf_cache_dir, simulated_layer_psf

__all__ = [
    "LayerBlurOperator",
    "LayerPsf",
    "MedSem",
    "fit_layer_psf",
    "psf_cache_dir",
    "simulated_layer_psf",
    "solve_bounded_least_squares",
]
