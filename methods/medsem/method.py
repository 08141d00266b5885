"""MED-SEM: multi-energy deconvolution SEM (de Goede et al., Nanoscale 9, 684 (2017);
Boughorbel et al., Microsc. Microanal. 18 S2 (2012)), the paper's classical baseline.

Pipeline per BSE stack (E, H, W):

1. contrast ``C_E = B_E - b_E - c_E``: the yield minus the simulated pure-Si yield ``b_E``
   (and the calibrated offset ``c_E``, zero unless ``fit`` ran with ``calibrate=True``);
2. source separation: the stack is split into Z depth-layer maps by non-negative matrix
   factorisation (scikit-learn NMF, pixels x energies), with the mixing matrix (one energy
   spectrum per depth) initialised from the simulated depth weights ``w[E, z]``; with
   ``bss_iterations > 0`` the mixing is refined blindly (MED-SEM's blind source separation),
   otherwise it is kept at the physics value and the step is a non-negative least-squares
   separation;
3. deconvolution: bounded least squares ``V in [0, 1]`` of the full forward model
   ``C_E = sum_z w[E, z] (h_{E,z} (*) V_z)`` (``operator.py``) by ADMM with DCT-domain solves,
   started from the separated layers, with a smoothness and a sparsity prior.

The result V (Cu fraction per voxel, Z = 20 layers of 1 nm) is the probability-like volume.
Energies are weighted by the inverse shot-noise variance ``1 / (b_E (1 - b_E))``.

``fit(train)`` is optional (``requires_training = False``): it calibrates a per-energy gain
``g_E`` and offset ``c_E`` by linear least squares of ``B_E - b_E ~ g_E (A V_true)_E + c_E`` over
training samples, absorbing the forward model's neglect of Cu-Cu shadowing on average.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.decomposition import non_negative_factorization

from datasets.protocol import Dataset
from datasets.splits import SplitDataset, split_energies
from methods.base import HyperParam, Method
from methods.inputs import check_stacks, energies_or_default
from methods.medsem.operator import LayerBlurOperator, solve_bounded_least_squares
from methods.medsem.psf import LayerPsf, simulated_layer_psf

#: per-energy calibration gains are kept in this range (a gain near 0 would erase an energy)
GAIN_LIMITS = (0.1, 10.0)
#: most training samples read by ``fit`` for the calibration
CALIBRATION_SAMPLES = 256


class MedSem(Method):
    """Multi-energy deconvolution SEM with simulator-derived PSFs (see module docstring)."""

    name = "medsem"
    label = "MED-SEM"
    requires_training = False
    oracle_thresholds = True  # the paper's Tables 3-4 thresholds are MED-SEM's
    hyperparams = {
        "iterations": HyperParam(60, doc="ADMM iterations of the bounded least-squares deconvolution"),
        "smoothness": HyperParam(
            0.2, doc="weight of the squared-gradient prior (lateral and depth), relative to ||A||^2"
        ),
        "sparsity": HyperParam(0.002, doc="weight of the L1 prior sum(V) (Cu is sparse), relative to ||A||^2"),
        "bss_iterations": HyperParam(
            0, doc="NMF iterations refining the mixing matrix blindly (0: keep the simulated depth weights)"
        ),
        "bss_regularisation": HyperParam(0.05, doc="ridge weight of the NMF layer maps, relative to ||mixing||^2"),
        "psf_electrons": HyperParam(100, doc="electrons per pixel of the PSF probe simulation"),
        "psf_seed": HyperParam(0, doc="seed of the PSF probe simulation"),
        "physics": HyperParam(
            None, doc="PhysicsConfig keywords for the PSF simulation, e.g. {'elastic': 'mott'}; match the data"
        ),
        "cutoff_eV": HyperParam(50.0, doc="detector energy cutoff (eV) of the PSF simulation; match the data"),
        "calibrate": HyperParam(
            False, retrain=True, doc="fit() calibrates per-energy gain/offset on training data (off: no gain on validation)"
        ),
    }

    def __init__(self, device: str = "cpu", cache_dir=None, psf: LayerPsf | None = None, **params):
        """``cache_dir``: PSF cache (default ``$BSE_BENCH_CACHE/psf`` or ``~/.cache/bse-bench/psf``);
        ``psf``: a ready PSF model (skips the simulation; e.g. one estimated from measurements)."""
        super().__init__(device=device, **params)
        self.cache_dir = cache_dir
        self._psf = psf
        self.gain: np.ndarray | None = None  # (E,) calibration, None = 1
        self.offset: np.ndarray | None = None  # (E,) calibration, None = 0

    # ------------------------------------------------------------------ PSF
    def layer_psf(self, energies_keV, progress: bool = False) -> LayerPsf:
        """The PSF model for these energies: the given/loaded one, else simulated (cached on disk)."""
        energies = np.asarray(energies_keV, dtype=float)
        if self._psf is not None and self._psf.energies_keV.shape == energies.shape and np.allclose(
            self._psf.energies_keV, energies, atol=1e-6
        ):
            return self._psf
        self._psf = simulated_layer_psf(
            energies,
            simulated_electrons_per_pixel=int(self.params["psf_electrons"]),
            physics=self.params["physics"],
            seed=int(self.params["psf_seed"]),
            cutoff_eV=float(self.params["cutoff_eV"]),
            device=self.device,
            cache_dir=self.cache_dir,
            progress=progress,
        )
        if self._psf.depth != self.depth:
            raise ValueError(f"PSF model has {self._psf.depth} depth layers, method expects {self.depth}")
        return self._psf

    def depth_weights(self, energies_keV) -> np.ndarray:
        """Contrast per Cu voxel w[E, z] (E, Z): the PSF model's, times the calibrated gain."""
        psf = self.layer_psf(energies_keV)
        return psf.weights if self.gain is None else psf.weights * self.gain[:, None]

    def forward_operator(self, energies_keV, shape_hw=(20, 20)) -> LayerBlurOperator:
        """The (calibrated) forward model for images of ``shape_hw`` pixels of 1 nm (the voxel size)."""
        return LayerBlurOperator(self.depth_weights(energies_keV), self.layer_psf(energies_keV).sigma_nm, shape_hw)

    # ------------------------------------------------------------------ reconstruction
    def _reconstruct(self, stacks: np.ndarray, energies_keV: np.ndarray) -> np.ndarray:
        batch, n_energies, height, width = stacks.shape
        psf = self.layer_psf(energies_keV, progress=True)  # a bar only when it must be simulated
        operator = self.forward_operator(energies_keV, (height, width))
        contrast = stacks.astype(float) - psf.background[None, :, None, None]
        if self.offset is not None:
            contrast -= self.offset[None, :, None, None]
        energy_weights = shot_noise_weights(psf.background)
        layers, refined = separate_layers(
            contrast,
            self.depth_weights(energies_keV),
            energy_weights,
            iterations=int(self.params["bss_iterations"]),
            regularisation=float(self.params["bss_regularisation"]),
        )
        solve = partial(
            solve_bounded_least_squares,
            energy_weights=energy_weights,
            smoothness=float(self.params["smoothness"]),
            sparsity=float(self.params["sparsity"]),
            iterations=int(self.params["iterations"]),
        )
        if not self.params["bss_iterations"]:
            return solve(operator, contrast, initial=layers)
        # blind separation: each volume is deconvolved with its own refined depth weights
        volumes = []
        for b in range(batch):
            blind_operator = LayerBlurOperator(refined[b], psf.sigma_nm, (height, width))
            volumes.append(solve(blind_operator, contrast[b : b + 1], initial=layers[b : b + 1]))
        return np.concatenate(volumes)

    # ------------------------------------------------------------------ calibration
    def fit(self, train, val=None, out_dir=None, progress: bool = True, resume: bool = False,
            deadline: float | None = None, energies_keV=None) -> dict:
        """Calibrate per-energy gain and offset on (up to 256) training samples; see module doc.

        ``train``: a sequence of dicts with ``bse`` (E, H, W) and ``label`` (D, H, W), e.g.
        ``open_dataset(path).split("train")``, or a dataset (its train split is used); its
        energies come from ``energies_keV``, else the split's ``energies_keV`` attribute, else a
        given PSF model's, else the default list. ``val``, ``out_dir``, ``resume`` and
        ``deadline`` are not used (the calibration takes seconds).
        """
        dataset = train if isinstance(train, Dataset) else train.dataset if isinstance(train, SplitDataset) else None
        if isinstance(train, Dataset):
            train = train.split("train")
        if dataset is not None:
            self._warn_on_physics_mismatch(dataset.meta)
        energies = energies_keV if energies_keV is not None else split_energies(train)
        if energies is None and self._psf is not None:
            energies = self._psf.energies_keV
        self.fitted = True
        if not self.params["calibrate"]:
            return {"calibrated": False}
        n_samples = min(len(train), CALIBRATION_SAMPLES)
        if n_samples == 0:
            raise ValueError("medsem calibration needs at least one training sample")
        items = [train[i] for i in range(n_samples)]
        bse = check_stacks(self, np.stack([_numpy(item["bse"]) for item in items]), energies)
        labels = np.stack([_numpy(item["label"]) for item in items]).astype(float)
        if labels.shape[1:] != (self.depth, *bse.shape[2:]):
            raise ValueError(f"labels have shape {labels.shape[1:]}, expected {(self.depth, *bse.shape[2:])}")
        energies = energies_or_default(self, energies, bse.shape[1])
        psf = self.layer_psf(energies, progress=progress)
        self.gain = self.offset = None
        predicted = self.forward_operator(energies, bse.shape[2:]).forward(labels)  # (N, E, H, W)
        measured = bse - psf.background[None, :, None, None]
        self.gain, self.offset = calibrate_gain_offset(predicted, measured)
        self.energies_keV = energies
        return {
            "calibrated": True,
            "samples": n_samples,
            "gain": self.gain.tolist(),
            "offset": self.offset.tolist(),
        }

    @classmethod
    def dataset_params(cls, dataset_preset) -> dict:
        """The PSFs are simulated with the dataset preset's physics and detector cutoff."""
        from datasets.presets import dataset_physics

        params = {"physics": dataset_physics(dataset_preset).names()}
        if dataset_preset.cutoff_eV != cls.hyperparams["cutoff_eV"].default:
            params["cutoff_eV"] = dataset_preset.cutoff_eV
        return params

    @staticmethod
    def psf_params_for(dataset_meta: dict) -> dict:
        """Hyper-parameters that make the PSF simulation match a dataset's physics
        (``open_dataset(path).meta``): ``{"physics": {...}, "cutoff_eV": ...}``."""
        from datasets.physics import PhysicsConfig

        params = {"physics": PhysicsConfig.from_record(dataset_meta.get("physics")).names()}
        cutoff = (dataset_meta.get("settings") or {}).get("cutoff_eV")
        if cutoff is not None:
            params["cutoff_eV"] = float(cutoff)
        return params

    def _warn_on_physics_mismatch(self, meta: dict) -> None:
        """Warn when the PSFs are simulated with other physics or cutoff than the data (``meta``:
        the dataset's manifest)."""
        wanted = self.psf_params_for(meta)
        from datasets.physics import PhysicsConfig

        mine = PhysicsConfig.from_record(self.params["physics"])
        theirs = PhysicsConfig.from_record(wanted["physics"])
        cutoff = wanted.get("cutoff_eV", self.params["cutoff_eV"])
        if mine != theirs or abs(cutoff - float(self.params["cutoff_eV"])) > 1e-9:
            warnings.warn(
                f"medsem: PSFs are simulated with {mine} and cutoff {self.params['cutoff_eV']} eV but the "
                f"data used {theirs} and cutoff {cutoff} eV; create the method with "
                f"MedSem(**MedSem.psf_params_for(dataset.meta)) to match",
                stacklevel=3,
            )

    # ------------------------------------------------------------------ state
    def _save_state(self, directory: Path) -> None:
        if self._psf is not None:
            self._psf.save(directory / "psf.npz")
        if self.gain is not None:
            np.savez(directory / "calibration.npz", gain=self.gain, offset=self.offset)

    def _load_state(self, directory: Path) -> None:
        if (directory / "psf.npz").exists():
            self._psf = LayerPsf.load(directory / "psf.npz")
        if (directory / "calibration.npz").exists():
            try:
                with np.load(directory / "calibration.npz", allow_pickle=False) as data:
                    self.gain, self.offset = np.asarray(data["gain"]), np.asarray(data["offset"])
            except Exception as err:  # noqa: BLE001 - any read failure means a corrupt file
                raise ValueError(f"corrupt {directory / 'calibration.npz'}: {err}") from err

    def describe(self) -> dict:
        info = super().describe()
        if self._psf is not None:
            info["psf"] = {k: self._psf.source.get(k) for k in ("kind", "cache_key", "electrons_per_pixel")}
        info["calibrated"] = self.gain is not None
        return info


# --------------------------------------------------------------------------- building blocks
def shot_noise_weights(background) -> np.ndarray:
    """Energy weights ~ 1 / var(yield) = 1 / (eta (1 - eta)) (binomial shot noise), mean 1."""
    eta = np.clip(np.asarray(background, dtype=float), 1e-4, 1 - 1e-4)
    weights = 1.0 / (eta * (1.0 - eta))
    return weights / weights.mean()


def separate_layers(contrast, weights, energy_weights, iterations: int = 0, regularisation: float = 0.05):
    """Non-negative source separation of contrast stacks (B, E, H, W) into layers (B, Z, H, W).

    Each pixel's weighted contrast spectrum is factorised as ``sum_z S_z * m_z`` with layer maps
    ``S >= 0`` and the depth spectra ``m_z`` (rows of the mixing matrix, initialised from the
    depth weights ``weights`` (E, Z)). ``iterations > 0`` refines the mixing of each volume
    blindly by NMF (each spectrum is rescaled back to its physical norm afterwards, fixing NMF's
    scale ambiguity). Returns the layers and the per-volume depth weights (B, E, Z).
    """
    batch, n_energies, height, width = contrast.shape
    sqrt_w = np.sqrt(np.asarray(energy_weights, dtype=float))
    mixing = (np.asarray(weights, dtype=float) * sqrt_w[:, None]).T  # (Z, E)
    depth = mixing.shape[0]
    row_norm = np.linalg.norm(mixing, axis=1, keepdims=True)  # (Z, 1)
    active = row_norm[:, 0] > 0
    alpha = regularisation * float(np.mean(row_norm[active] ** 2)) / n_energies if active.any() else 0.0
    layers = np.zeros((batch, depth, height, width))
    refined = np.zeros((batch, depth, n_energies))
    for b in range(batch):
        data = np.clip(contrast[b] * sqrt_w[:, None, None], 0.0, None).reshape(n_energies, -1).T  # (P, E)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: iterations are a budget here
            maps, _, _ = non_negative_factorization(
                data, H=mixing, n_components=depth, update_H=False, solver="cd", alpha_W=alpha,
                alpha_H=0.0, l1_ratio=0.0, max_iter=200, tol=1e-4,
            )
            mix_b = mixing
            if iterations > 0:
                maps, mix_b, _ = non_negative_factorization(
                    data, W=maps + 1e-6, H=mixing.copy(), n_components=depth, init="custom",
                    update_H=True, solver="mu", alpha_W=alpha, alpha_H=0.0, l1_ratio=0.0,
                    max_iter=int(iterations), tol=0.0,
                )
                norm = np.linalg.norm(mix_b, axis=1, keepdims=True)
                scale = np.where(norm > 0, row_norm / np.maximum(norm, 1e-30), 0.0)  # (Z, 1)
                mix_b = mix_b * scale
                maps = maps / np.where(scale[:, 0] > 0, scale[:, 0], 1.0)
        layers[b] = maps.T.reshape(depth, height, width)
        refined[b] = mix_b
    refined_weights = refined.transpose(0, 2, 1) / sqrt_w[None, :, None]  # (B, E, Z)
    return np.clip(layers, 0.0, 1.0), refined_weights


def calibrate_gain_offset(predicted, measured) -> tuple[np.ndarray, np.ndarray]:
    """Per-energy least squares ``measured_E ~ g_E * predicted_E + c_E`` over samples and pixels.

    Both arrays (N, E, H, W). Gains are clipped to ``GAIN_LIMITS``; an energy whose predicted
    contrast does not vary keeps gain 1 and gets the mean residual as offset.
    """
    n_energies = predicted.shape[1]
    p = np.moveaxis(predicted, 1, 0).reshape(n_energies, -1)
    m = np.moveaxis(measured, 1, 0).reshape(n_energies, -1)
    p_mean, m_mean = p.mean(axis=1), m.mean(axis=1)
    var = ((p - p_mean[:, None]) ** 2).mean(axis=1)
    cov = ((p - p_mean[:, None]) * (m - m_mean[:, None])).mean(axis=1)
    gain = np.where(var > 1e-12, cov / np.maximum(var, 1e-30), 1.0)
    gain = np.clip(gain, *GAIN_LIMITS)
    offset = m_mean - gain * p_mean
    return gain, offset


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)
