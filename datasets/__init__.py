"""Geometry, physics (Monte Carlo BSE simulation), storage and loaders of the benchmark suite.

Note: this top-level package is named ``datasets``, like the Hugging Face library; install the
suite into its own virtual environment (``nox`` does) so the two never shadow each other.
"""

from datasets.scene import DEFAULT_ENERGIES_KEV, Scene, block_labels, paper_block, validate_geometry
from datasets.stack import BseStack

__all__ = ["DEFAULT_ENERGIES_KEV", "BseStack", "Scene", "block_labels", "paper_block", "validate_geometry"]
