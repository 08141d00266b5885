"""The scene's symmetries: augmentation keeps stack and label together, test-time averaging makes
a network exactly equivariant, and the simulator itself respects the symmetries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.scene import paper_block
from datasets.simulate import simulate_stack
from methods import symmetry
from methods.base import create


def test_the_eight_symmetries_are_a_group_with_inverses():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    images = {symmetry.transform(x, g).numpy().tobytes() for g in range(8)}
    assert len(images) == 8  # all distinct on a generic image
    for g in range(8):
        assert torch.equal(symmetry.inverse(symmetry.transform(x, g), g), x)
    assert symmetry.symmetries_of((5, 4, 6)) == symmetry.RECTANGLE_SYMMETRIES


def test_augmentation_moves_stack_and_label_together():
    stacks = torch.rand(16, 3, 6, 6)
    labels = (stacks[:, :2] > 0.5).float()  # a label that is a function of the stack, pixel by pixel
    x, y = symmetry.augment(stacks, labels, torch.Generator().manual_seed(1))
    assert torch.equal(y, (x[:, :2] > 0.5).float())
    assert not torch.equal(x, stacks)  # something was transformed


def test_test_time_averaging_makes_a_network_exactly_equivariant():
    """recon(T stack) == T recon(stack) for every symmetry T, with an untrained (asymmetric) net."""
    method = create("bsevox", config="tiny", tta=True)
    method.init_network(20, seed=3)
    method.network.eval()
    method.fitted = True
    rng = np.random.default_rng(0)
    stack = rng.random((1, 20, 20, 20), dtype=np.float32)
    base = torch.from_numpy(method.reconstruct(stack))
    for g in range(8):
        moved = symmetry.transform(torch.from_numpy(stack), g).numpy()
        torch.testing.assert_close(torch.from_numpy(method.reconstruct(moved)), symmetry.transform(base, g),
                                   atol=1e-5, rtol=0)
    method.params["tta"] = False  # without the averaging the untrained network is not equivariant
    plain = torch.from_numpy(method.reconstruct(stack))
    turned = torch.from_numpy(method.reconstruct(symmetry.transform(torch.from_numpy(stack), 1).numpy()))
    assert not torch.allclose(turned, symmetry.transform(plain, 1), atol=1e-4)


@pytest.mark.parametrize("g", [1, 4])
def test_the_simulator_respects_the_symmetries(g):
    """A rotated (mirrored) geometry gives the rotated (mirrored) image within counting error."""
    mask = np.zeros((20, 20, 20), bool)
    mask[0:6, 2:9, 3:15] = True  # an asymmetric Cu bar near the surface
    geometry = paper_block(mask)
    moved = symmetry.transform(torch.from_numpy(geometry), g).numpy().copy()
    n = 200
    a = simulate_stack(geometry, energies_keV=[1.5], simulated_electrons_per_pixel=n, seed=1).bse[0]
    b = simulate_stack(moved, energies_keV=[1.5], simulated_electrons_per_pixel=n, seed=2).bse[0]
    expected = symmetry.transform(torch.from_numpy(a), g).numpy()
    var = (expected * (1 - expected) + b * (1 - b)).clip(1 / n) / n
    chi2 = float(((b - expected) ** 2 / var).sum())
    assert chi2 < 400 + 5 * np.sqrt(800), chi2  # chi2 with 400 dof
    bar = symmetry.transform(torch.from_numpy(mask[0]), g).numpy()  # the bar's top layer, moved
    assert b[bar].mean() > b[~bar].mean() + 0.02  # the moved bar shows where it should
