"""The exact symmetries of the scene, for training augmentation and test-time averaging.

Normal incidence at the pixel centres, a detector covering the whole plane, mirror side walls and
isotropic scattering make the simulated stack of a geometry rotated or mirrored in (x, y) the
rotated or mirrored stack: the 8 symmetries of the square (the dihedral group D4) act on the
last two axes (y, x) of a stack (E, H, W) and of its label (D, H, W) alike. Translations are not
symmetries (the walls are mirrors). A rectangular image keeps the 4 symmetries of the rectangle.

Element ``g`` in 0..7: ``g % 4`` quarter turns (``torch.rot90`` on (y, x)), then, for ``g >= 4``,
a mirror of x.
"""

from __future__ import annotations

import torch

N_SYMMETRIES = 8
#: the symmetries of a non-square rectangle: identity, half turn, mirror x, mirror y
RECTANGLE_SYMMETRIES = (0, 2, 4, 6)


def transform(x: torch.Tensor, g: int) -> torch.Tensor:
    """Apply symmetry ``g`` to the last two axes of ``x``."""
    x = torch.rot90(x, g % 4, dims=(-2, -1))
    return x.flip(-1) if g >= 4 else x


def inverse(x: torch.Tensor, g: int) -> torch.Tensor:
    """Undo :func:`transform` ``g``."""
    if g >= 4:
        x = x.flip(-1)
    return torch.rot90(x, -(g % 4), dims=(-2, -1))


def symmetries_of(shape) -> tuple[int, ...]:
    """The symmetries of an image of lateral shape (..., H, W)."""
    return tuple(range(N_SYMMETRIES)) if shape[-1] == shape[-2] else RECTANGLE_SYMMETRIES


def augment(stacks: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """Each sample of a batch under one symmetry drawn from ``generator``, the same on its stack
    (B, E, H, W) and its label (B, D, H, W)."""
    allowed = torch.tensor(symmetries_of(stacks.shape))
    choice = allowed[torch.randint(len(allowed), (len(stacks),), generator=generator)]
    out_x, out_y = stacks.clone(), labels.clone()
    for g in allowed.tolist():
        idx = (choice == g).nonzero(as_tuple=True)[0]
        if len(idx) and g:
            out_x[idx] = transform(stacks[idx], g)
            out_y[idx] = transform(labels[idx], g)
    return out_x, out_y


def symmetric_average(predict, stacks: torch.Tensor) -> torch.Tensor:
    """Test-time averaging: the mean over the symmetries of ``inverse(predict(transform(x)))``.
    The result is exactly equivariant: the average of a transformed stack is the transformed
    average."""
    group = symmetries_of(stacks.shape)
    total = None
    for g in group:
        out = inverse(predict(transform(stacks, g)), g)
        total = out if total is None else total + out
    return total / len(group)
