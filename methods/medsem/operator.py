"""MED-SEM's linear forward model as a fast operator in the DCT-II domain.

The BSE contrast image at beam energy E is a depth-weighted sum of the sub-surface layers, each
blurred by an energy- and depth-dependent point spread function (de Goede et al. 2017, eq. 1):

    C_E = sum_z w[E, z] * (h_{E,z} (*) V_z)

with V_z the Cu fraction of depth layer z (z = 0 at the top of the Si block, 1 nm per layer),
w[E, z] the contrast (yield units) of one Cu voxel at depth z, and h_{E,z} an isotropic Gaussian
of width sigma[E, z] (pixels) normalised to unit sum. The simulator's lateral faces are mirrors,
so the convolution uses half-sample symmetric boundaries (``x[-1] = x[0]``); a symmetric kernel
under that boundary is diagonalised exactly by the orthonormal DCT-II, which makes the forward
operator, its adjoint and the normal equations per-frequency Z x Z matrix products.
"""

from __future__ import annotations

import numpy as np
from scipy import fft


def gaussian_dct_eigenvalues(sigma_px, n: int) -> np.ndarray:
    """DCT-II eigenvalues (..., n) of 1-D convolution with a unit-sum sampled Gaussian.

    Under half-sample symmetric boundaries, convolution with a symmetric kernel g[m] has the
    eigenvalue ``sum_m g[m] cos(pi k m / n)`` for DCT-II mode k. ``sigma_px`` <= 0.05 is a delta.
    """
    sigma = np.asarray(sigma_px, dtype=float)[..., None, None]  # (..., 1, 1)
    m = np.arange(-3 * n, 3 * n + 1, dtype=float)  # wide enough for sigma up to ~n
    kernel = np.exp(-0.5 * (m / np.maximum(sigma, 0.05)) ** 2)
    kernel /= kernel.sum(axis=-1, keepdims=True)
    k = np.arange(n, dtype=float)[:, None]
    return (kernel * np.cos(np.pi * k * m / n)).sum(axis=-1)  # (..., n)


def dct2(x: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT-II over the last two axes."""
    return fft.dctn(x, type=2, axes=(-2, -1), norm="ortho")


def idct2(x: np.ndarray) -> np.ndarray:
    """Inverse of ``dct2``."""
    return fft.idctn(x, type=2, axes=(-2, -1), norm="ortho")


class LayerBlurOperator:
    """Forward model ``A: V (..., Z, H, W) -> C (..., E, H, W)`` and its adjoint.

    ``weights`` (E, Z): contrast per Cu voxel; ``sigma_px`` (E, Z): Gaussian PSF width in pixels.
    """

    def __init__(self, weights, sigma_px, shape_hw: tuple[int, int]):
        weights = np.asarray(weights, dtype=float)
        sigma_px = np.asarray(sigma_px, dtype=float)
        if weights.ndim != 2 or sigma_px.shape != weights.shape:
            raise ValueError(
                f"weights and sigma_px must both have shape (E, Z), got {weights.shape} and {sigma_px.shape}"
            )
        height, width = (int(s) for s in shape_hw)
        self.n_energies, self.depth = weights.shape
        self.shape_hw = (height, width)
        lam_y = gaussian_dct_eigenvalues(sigma_px, height)  # (E, Z, H)
        lam_x = gaussian_dct_eigenvalues(sigma_px, width)  # (E, Z, W)
        #: (E, Z, H, W) transfer function in the DCT domain
        self.transfer = weights[..., None, None] * lam_y[..., :, None] * lam_x[..., None, :]

    # ------------------------------------------------------------------ operator
    def forward(self, volume: np.ndarray) -> np.ndarray:
        """Contrast images (..., E, H, W) of layer volumes (..., Z, H, W)."""
        self._check(volume, self.depth, "volume")
        return idct2(np.einsum("ezhw,...zhw->...ehw", self.transfer, dct2(volume)))

    def adjoint(self, images: np.ndarray) -> np.ndarray:
        """Adjoint ``A^T``: images (..., E, H, W) -> layer volumes (..., Z, H, W)."""
        self._check(images, self.n_energies, "images")
        return idct2(np.einsum("ezhw,...ehw->...zhw", self.transfer, dct2(images)))

    def frequency_matrices(self) -> np.ndarray:
        """The operator as one (E, Z) matrix per DCT frequency: shape (H*W, E, Z)."""
        h, w = self.shape_hw
        return self.transfer.reshape(self.n_energies, self.depth, h * w).transpose(2, 0, 1)

    def _check(self, arr: np.ndarray, channels: int, name: str) -> None:
        if arr.ndim < 3 or arr.shape[-3:] != (channels, *self.shape_hw):
            raise ValueError(
                f"{name} must have shape (..., {channels}, {self.shape_hw[0]}, {self.shape_hw[1]}), "
                f"got {arr.shape}"
            )


def neumann_laplacian_eigenvalues(n: int) -> np.ndarray:
    """Eigenvalues of the 1-D discrete -Laplacian (mirror boundaries) on DCT-II modes: 2 - 2cos(pi k / n)."""
    return 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)


def depth_difference_gram(depth: int) -> np.ndarray:
    """D^T D for the forward difference along depth (Z x Z, free ends): penalises layer-to-layer jumps."""
    diff = np.diff(np.eye(depth), axis=0)
    return diff.T @ diff


def solve_bounded_least_squares(
    operator: LayerBlurOperator,
    contrast: np.ndarray,
    energy_weights: np.ndarray,
    smoothness: float = 0.0,
    sparsity: float = 0.0,
    iterations: int = 100,
    initial: np.ndarray | None = None,
    rho: float = 1.0,
) -> np.ndarray:
    """Bounded least-squares deconvolution by ADMM, for a batch of contrast stacks (B, E, H, W).

    Minimises over V in [0, 1]^(Z x H x W), per volume,

        1/2 sum_E omega_E ||(A V)_E - C_E||^2 / s + smoothness/2 (||grad_xy V||^2 + ||d_z V||^2)
        + sparsity * sum V

    where ``s`` is the largest eigenvalue of A^T Omega A (so the weights are dimensionless). The
    V-update solves the regularised normal equations exactly, one Z x Z system per DCT
    frequency; the Z-update projects onto [0, 1]. Returns the feasible iterate (B, Z, H, W).
    """
    contrast = np.asarray(contrast, dtype=float)
    if contrast.ndim != 4:
        raise ValueError(f"contrast must have shape (B, E, H, W), got {contrast.shape}")
    batch = contrast.shape[0]
    depth, (height, width) = operator.depth, operator.shape_hw
    omega = np.asarray(energy_weights, dtype=float)
    mats = operator.frequency_matrices()  # (F, E, Z)
    gram = np.einsum("fez,e,fey->fzy", mats, omega, mats)  # A^T Omega A per frequency
    scale = float(np.linalg.eigvalsh(gram).max())
    if not scale > 0:
        raise ValueError("the PSF model gives no contrast at any energy (all weights zero)")
    lap_xy = (
        neumann_laplacian_eigenvalues(height)[:, None] + neumann_laplacian_eigenvalues(width)[None, :]
    ).reshape(-1)
    eye = np.eye(depth)
    system = (
        gram / scale
        + smoothness * (lap_xy[:, None, None] * eye + depth_difference_gram(depth))
        + rho * eye
    )
    system_inv = np.linalg.inv(system)  # (F, Z, Z), symmetric positive definite

    # right-hand side terms that do not change: A^T Omega C / s - sparsity
    rhs_data = np.einsum("fez,e,bef->bzf", mats, omega, dct2(contrast).reshape(batch, -1, height * width)) / scale
    rhs_data -= sparsity * dct2(np.ones((depth, height, width))).reshape(1, depth, -1)

    z_var = np.zeros((batch, depth, height, width)) if initial is None else np.clip(initial, 0.0, 1.0)
    dual = np.zeros_like(z_var)
    for _ in range(int(iterations)):
        rhs = rhs_data + rho * dct2(z_var - dual).reshape(batch, depth, -1)
        v_hat = np.einsum("fzy,byf->bzf", system_inv, rhs)
        v_var = idct2(v_hat.reshape(batch, depth, height, width))
        z_var = np.clip(v_var + dual, 0.0, 1.0)
        dual += v_var - z_var
    return z_var
