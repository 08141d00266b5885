"""MED-SEM point spread functions estimated with the Monte Carlo simulator, cached on disk.

For every depth layer z of the Si block the simulator images a *probe*: a 1 nm thick Cu
half-layer (x < W/2, all y) at that depth, plus one pure-Si reference block. The probe's
contrast relative to pure Si, per energy E, is an edge-spread profile across x; fitting it
with ``w[E, z] * (Gaussian(sigma[E, z]) (*) half-plane)`` (mirror boundaries, as in the
simulator) gives the layer's contrast per Cu voxel ``w`` (depth weight, yield units) and the
lateral PSF width ``sigma`` (nm) of the forward model in ``operator.py``.

Why an edge and not a single Cu voxel: one Cu voxel changes the yield of the pixel above it by
``w`` = 0.003-0.07 (measured), at or below the per-pixel shot noise of an affordable simulation
(0.01-0.04 at 100 electrons per pixel), whereas the edge probe averages 200 Cu pixels over 20
rows and still resolves the lateral spread across the edge.

Results are cached under ``$BSE_BENCH_CACHE/psf`` (default ``~/.cache/bse-bench/psf``), one
``.npz`` per key = hash of (energies, electrons, seed, device, physics description, simulator
version, scene, cutoff, probe design), holding the raw simulated images; the fit is redone on
load (milliseconds).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from datasets.stack import save_npz
from methods.medsem.operator import gaussian_dct_eigenvalues

#: bump when the probe design or the stored arrays change
PSF_FORMAT_VERSION = 1
#: candidate lateral PSF widths (nm) for the edge-profile fit
SIGMA_GRID_NM = np.geomspace(0.2, 10.0, 48)


@dataclass
class LayerPsf:
    """Depth weights and lateral PSF widths of the MED-SEM forward model, per energy and depth.

    ``background`` (E,): pure-Si yield; ``weights`` (E, Z): yield change per Cu voxel at depth z;
    ``sigma_nm`` (E, Z): Gaussian PSF width; ``source``: how it was made (for provenance).
    """

    energies_keV: np.ndarray
    background: np.ndarray
    weights: np.ndarray
    sigma_nm: np.ndarray
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        self.energies_keV = np.asarray(self.energies_keV, dtype=float)
        self.background = np.asarray(self.background, dtype=float)
        self.weights = np.asarray(self.weights, dtype=float)
        self.sigma_nm = np.asarray(self.sigma_nm, dtype=float)
        n_energies = self.energies_keV.size
        if self.background.shape != (n_energies,) or self.weights.ndim != 2 or self.weights.shape[0] != n_energies:
            raise ValueError(
                f"inconsistent PSF arrays: energies {self.energies_keV.shape}, background "
                f"{self.background.shape}, weights {self.weights.shape} (expected (E,) and (E, Z))"
            )
        if self.sigma_nm.shape != self.weights.shape:
            raise ValueError(f"sigma_nm shape {self.sigma_nm.shape} differs from weights {self.weights.shape}")

    @property
    def depth(self) -> int:
        return self.weights.shape[1]

    def save(self, path) -> Path:
        path = Path(path)
        return save_npz(path, {"energies_keV": self.energies_keV, "background": self.background,
                               "weights": self.weights, "sigma_nm": self.sigma_nm,
                               "source_json": np.array(json.dumps(self.source, default=str))}, compressed=False)

    @classmethod
    def load(cls, path) -> LayerPsf:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    energies_keV=data["energies_keV"],
                    background=data["background"],
                    weights=data["weights"],
                    sigma_nm=data["sigma_nm"],
                    source=json.loads(str(data["source_json"])),
                )
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any read failure means a corrupt file
            raise ValueError(f"{path} is not a readable MED-SEM PSF file: {err}") from err


# --------------------------------------------------------------------------- cache
def psf_cache_dir(cache_dir=None) -> Path:
    """``cache_dir``, else ``$BSE_BENCH_CACHE/psf``, else ``~/.cache/bse-bench/psf``."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("BSE_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "bse-bench") / "psf"


def psf_cache_key(settings: dict) -> str:
    """SHA-256 (first 20 hex digits) of the JSON of everything that changes the probe images."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def probe_geometries(scene_shape=(26, 20, 20), block_z_nm=(5, 25)) -> tuple[np.ndarray, np.ndarray]:
    """Pure-Si reference plus one Cu half-layer probe per depth: (1 + Z, Z0, Y, X) uint8, and
    the probes' Cu masks over the block (Z, Z, Y, X) bool."""
    from datasets.scene import COPPER, SILICON

    depth = block_z_nm[1] - block_z_nm[0]
    _, ny, nx = scene_shape
    reference = np.zeros(scene_shape, dtype=np.uint8)
    reference[block_z_nm[0] : block_z_nm[1]] = SILICON
    masks = np.zeros((depth, depth, ny, nx), dtype=bool)
    for z in range(depth):
        masks[z, z, :, : nx // 2] = True
    geometries = np.repeat(reference[None], depth + 1, axis=0)
    geometries[1:, block_z_nm[0] : block_z_nm[1]][masks] = COPPER
    return geometries, masks


def simulated_layer_psf(
    energies_keV,
    simulated_electrons_per_pixel: int = 100,
    physics: dict | None = None,
    seed: int = 0,
    cutoff_eV: float = 50.0,
    device: str = "cpu",
    cache_dir=None,
    progress: bool = False,
) -> LayerPsf:
    """PSF model from simulated probes (see module docstring), simulated once and cached.

    ``physics``: keyword arguments of ``datasets.physics.PhysicsConfig`` (None = default models);
    it should match the physics the reconstructed stacks were simulated with.
    """
    from datasets.physics import PhysicsConfig
    from datasets.scene import BLOCK_Z_NM, PAPER_SHAPE_ZYX, Scene
    from datasets.simulate import SIMULATOR_VERSION, check_energies

    energies = check_energies(energies_keV)
    physics_config = PhysicsConfig.from_record(physics)
    scene = Scene()
    settings = {
        "format": PSF_FORMAT_VERSION,
        "probe": "cu-half-layer-per-depth",
        "energies_keV": [round(float(e), 6) for e in energies],
        "electrons_per_pixel": int(simulated_electrons_per_pixel),  # cache key (file format)
        "seed": int(seed),
        "device": str(device).split(":")[0],
        "physics": physics_config.describe(),
        "simulator_version": SIMULATOR_VERSION,
        "scene": asdict(scene),
        "scene_shape": list(PAPER_SHAPE_ZYX),
        "block_z_nm": list(BLOCK_Z_NM),
        "cutoff_eV": float(cutoff_eV),
    }
    key = psf_cache_key(settings)
    path = psf_cache_dir(cache_dir) / f"layer-psf-{key}.npz"
    geometries, masks = probe_geometries(PAPER_SHAPE_ZYX, BLOCK_Z_NM)
    if path.exists():
        images = _load_probe_images(path, expected_shape=(geometries.shape[0], energies.size, *geometries.shape[2:]))
    else:
        images = _simulate_probe_images(geometries, energies, settings, physics_config, scene, device, progress)
        save_npz(path, {"images": images, "settings_json": np.array(json.dumps(settings, default=str))})
    psf = fit_layer_psf(energies, images[0], images[1:], masks.any(axis=1))
    psf.source = {"kind": "simulated-edge-probes", "cache_file": str(path), "cache_key": key, **settings}
    return psf


def _simulate_probe_images(geometries, energies, settings, physics_config, scene, device, progress) -> np.ndarray:
    from datasets.simulate import simulate_stacks

    stacks = simulate_stacks(
        geometries,
        energies_keV=energies,
        simulated_electrons_per_pixel=settings["electrons_per_pixel"],
        seed=settings["seed"],
        device=device,
        physics=physics_config,
        cutoff_eV=settings["cutoff_eV"],
        scene=scene,
        progress=progress,
    )
    return np.stack([s.bse for s in stacks]).astype(np.float32)  # (1 + Z, E, Y, X)


def _load_probe_images(path: Path, expected_shape) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"]
    except Exception as err:  # noqa: BLE001 - any read failure means a corrupt cache entry
        raise ValueError(f"corrupt PSF cache file {path} ({err}); delete it to re-simulate") from err
    if images.shape != tuple(expected_shape):
        raise ValueError(f"PSF cache file {path} holds images {images.shape}, expected {tuple(expected_shape)}")
    return images


# --------------------------------------------------------------------------- fit
def fit_layer_psf(
    energies_keV, reference, probes, probe_masks, sigma_grid_nm=SIGMA_GRID_NM, pool=(1, 2)
) -> LayerPsf:
    """Fit depth weights and Gaussian widths to probe images.

    ``reference`` (E, Y, X): pure-Si images; ``probes`` (Z, E, Y, X): one probe per depth;
    ``probe_masks`` (Z, Y, X): the Cu voxels of each probe's layer (1 nm voxels = pixels).
    For each (E, z) the contrast image ``probe - mean(reference)`` is fitted by least squares
    with ``w * G_sigma (*) mask`` for every sigma of the grid. Shot noise is tamed with two
    physical priors: sigma is chosen to best explain the probes of the neighbouring
    ``pool = (energies, depths)`` as well (the PSF varies smoothly), and ``w`` is made
    non-negative and non-increasing with depth (isotonic regression: a deeper Cu layer is
    reached by fewer electrons and its backscatter is attenuated more on the way out).
    """
    from sklearn.isotonic import IsotonicRegression

    from methods.medsem.operator import dct2, idct2

    reference = np.asarray(reference, dtype=float)
    probes = np.asarray(probes, dtype=float)
    masks = np.asarray(probe_masks, dtype=float)
    depth, n_energies, ny, nx = probes.shape
    background = reference.mean(axis=(1, 2))
    contrast = probes - background[None, :, None, None]  # (Z, E, Y, X)

    sigma_grid = np.asarray(sigma_grid_nm, dtype=float)
    lam = gaussian_dct_eigenvalues(sigma_grid, ny)[:, :, None] * gaussian_dct_eigenvalues(sigma_grid, nx)[:, None, :]
    models = idct2(lam[None] * dct2(masks)[:, None])  # (Z, S, Y, X): blurred unit-contrast probes
    dot = np.einsum("zsyx,zeyx->zes", models, contrast)
    norm2 = np.einsum("zsyx,zsyx->zs", models, models)[:, None, :]
    explained = np.where(dot > 0, dot**2 / norm2, 0.0)  # residual reduction of a positive fit
    pooled = _box_sum(explained, pool_depth=pool[1], pool_energy=pool[0])
    best = np.argmax(pooled, axis=-1)  # (Z, E)
    amplitude = np.take_along_axis(dot / norm2, best[..., None], axis=-1)[..., 0]  # (Z, E)
    depths = np.arange(depth)
    weights = np.stack(
        [IsotonicRegression(increasing=False, y_min=0.0).fit_transform(depths, amplitude[:, e]) for e in range(n_energies)]
    )  # (E, Z)
    sigma = sigma_grid[best].T
    return LayerPsf(energies_keV=energies_keV, background=background, weights=weights, sigma_nm=sigma)


def _box_sum(values: np.ndarray, pool_depth: int, pool_energy: int) -> np.ndarray:
    """Sum of ``values`` (Z, E, S) over a (2 pool_depth + 1) x (2 pool_energy + 1) window in (z, E)."""
    from scipy.ndimage import uniform_filter

    size = (2 * pool_depth + 1, 2 * pool_energy + 1, 1)
    return uniform_filter(values, size=size, mode="nearest")
