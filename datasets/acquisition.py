"""Image formation after the simulation: drift, detector gain and readout noise, brightness/contrast.

The simulator gives the paper's ideal images: a point beam at every pixel centre, every electron
above the cutoff counted, no drift, and only the shot noise of the simulated (or thinned) dose.
A real microscope adds, per image, what the operators of this module add to a BSE stack ``bse``
of yields (detected electrons per primary, dimensionless) with shape (E, H, W), or to a batch
(N, E, H, W). They compose (:class:`Acquisition`) in the style of deepinv's physics operators:
each is a small callable ``op(bse, seed=S, index=i)``, its equation in its docstring, and a
JSON record ``op.describe()`` that :func:`from_record` turns back into the operator.

Random draws: sample ``n`` of a batch whose first sample index is ``i`` draws from
``numpy.random.SeedSequence([seed, i + n, position, operator code])`` (``position``: the
operator's place in its :class:`Acquisition`), so a sample's degradation depends only on the
seed, its own index and the composition, never on the batch it came in.

Named levels for the realism study: :data:`LEVELS` (``level(name)``), grouped by degradation
in :data:`DEGRADATIONS`. Everything here is off unless asked: the ideal data stay the default.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from datasets.errors import look_up

RECORD_VERSION = 1
#: yields are fractions of the primaries detected: :class:`Acquisition` clips its result to these
YIELD_RANGE = (0.0, 1.0)


def check_bse(bse) -> np.ndarray:
    """``bse`` as float64 (N, E, H, W) (a single stack gets N = 1); ``ValueError`` naming the problem."""
    array = np.asarray(bse, dtype=np.float64)
    if array.ndim not in (3, 4):
        raise ValueError(f"bse must have shape (E, H, W) or (N, E, H, W), got {array.shape}")
    if min(array.shape) == 0:
        raise ValueError(f"bse is empty: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("bse contains NaN or infinite values")
    return array if array.ndim == 4 else array[None]


def _indices(index, n: int) -> list[int]:
    """Sample indices of a batch of ``n``: ``index`` is the first one (int) or all of them."""
    indices = [index + k for k in range(n)] if np.ndim(index) == 0 else [int(i) for i in index]
    if len(indices) != n:
        raise ValueError(f"{len(indices)} sample indices for a batch of {n}")
    if any(i < 0 for i in indices):
        raise ValueError(f"sample indices must be >= 0, got {indices}")
    return indices


def _check_number(name: str, value, low: float = 0.0) -> float:
    value = float(value)
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value}")
    return value


def _check_range(name: str, pair, low: float = -math.inf) -> tuple[float, float]:
    a, b = (float(v) for v in pair)
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < low:
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high and low >= {low:g}, got {pair}")
    return a, b


class Operator(ABC):
    """One degradation: ``op(bse, seed=0, index=0)`` -> degraded float32 array of ``bse``'s shape.

    Subclasses define ``code`` (a fixed integer of the random stream), ``name``, ``params()``,
    ``draw(rng, shape) -> dict`` (the random parameters of one stack of shape (E, H, W)) and
    ``apply(stack, draw) -> stack``; :meth:`summary` names the draws worth recording.
    """

    code = 0
    name = "operator"

    @abstractmethod
    def params(self) -> dict:
        """The operator's settings (JSON values) that :func:`from_record` needs."""

    @abstractmethod
    def draw(self, rng: np.random.Generator, shape: tuple) -> dict:
        """The random parameters of one stack of shape (E, H, W), drawn from ``rng``."""

    @abstractmethod
    def apply(self, stack: np.ndarray, draw: dict) -> np.ndarray:
        """``stack`` (E, H, W) float64 degraded with ``draw``."""

    def summary(self, draw: dict) -> dict:
        """The draws of one stack small enough to record in its metadata (none by default)."""
        return {}

    def describe(self) -> dict:
        """JSON record: ``{"op": name, "version": ..., **params}`` (:func:`from_record` inverts it)."""
        return {"op": self.name, "version": RECORD_VERSION, **self.params()}

    def generator(self, seed: int, index: int, position: int = 0) -> np.random.Generator:
        """The generator of sample ``index`` for this operator at ``position`` in a composition."""
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(position), self.code]))

    def __call__(self, bse, seed: int = 0, index=0):
        return Acquisition([self], clip=False)(bse, seed=seed, index=index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.describe() == other.describe()


class Drift(Operator):
    """Per-energy rigid sub-pixel translation (stage/beam drift between the E images).

    ``out_e(x) = in_e(x - d_e)``: the content of image e moves by ``d_e`` (pixels, (dy, dx)).
    ``d_0 = 0``: the first energy's image is the reference, as when the stack is registered to
    its first image; the later images are misregistered relative to it and the reconstruction's
    frame (that of the labels) stays the first image's, so the score measures the loss of
    inter-energy registration, not a global offset no method could know. For e >= 1 the shifts
    are independent, isotropic Gaussian: ``d_e ~ N(0, s^2 I_2)``, ``s = amplitude_nm /
    (pixel_nm sqrt 2)``, so the RMS length ``sqrt(E|d_e|^2)`` is ``amplitude_nm / pixel_nm``
    pixels (|d_e| is Rayleigh distributed: uniform direction, mean length 0.886 amplitude).

    Interpolation: bilinear, so a shifted image stays within the range of the original (yields
    stay in [0, 1]) and the intensity centroid moves by exactly ``d_e`` away from the border; it
    blurs by at most 1/4 px^2 per axis at half-pixel shifts (real drift within a frame blurs
    too). Boundary: half-sample symmetric reflection (``... b a | a b ...``, scipy's "reflect").

    Typical values: at high magnification (100,000x and up) the sample drifts visibly during and
    between frames, mostly thermally and roughly linearly in time (Snella, "Drift correction for
    scanning-electron microscopy", MEng thesis, MIT 2010; Cizmar, Vladar, Postek, "Advances in
    modeling of scanning charged-particle-microscopy images", arXiv:1006.0171, NIST 2010, whose
    drift-corrected image composition registers such series). A 20-energy stack takes minutes,
    so 0.25-1 nm between images of 1 nm pixels is plausible; the levels are assumed, not measured.
    """

    code = 1
    name = "drift"

    def __init__(self, amplitude_nm: float, pixel_nm: float = 1.0):
        self.amplitude_nm = _check_number("drift amplitude_nm", amplitude_nm)
        self.pixel_nm = _check_number("pixel_nm", pixel_nm)
        if self.pixel_nm == 0:
            raise ValueError("pixel_nm must be > 0")

    def params(self) -> dict:
        return {"amplitude_nm": self.amplitude_nm, "pixel_nm": self.pixel_nm}

    def draw(self, rng, shape) -> dict:
        sigma_px = self.amplitude_nm / (self.pixel_nm * math.sqrt(2.0))
        shifts = rng.normal(0.0, 1.0, size=(shape[0], 2)) * sigma_px
        shifts[0] = 0.0
        return {"shift_px": shifts}

    def apply(self, stack, draw):
        return shift_stack(stack, draw["shift_px"])

    def summary(self, draw) -> dict:
        return {"shift_px": np.round(draw["shift_px"], 6).tolist()}


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric reflection of integer indices into [0, n)."""
    m = np.mod(index, 2 * n)
    return np.where(m >= n, 2 * n - 1 - m, m)


def shift_image(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``out(y, x) = image(y - dy, x - dx)``, bilinear, reflected at the borders (pixels)."""
    return shift_stack(np.asarray(image)[None], np.array([[dy, dx]], dtype=np.float64))[0]


def shift_stack(stack: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each image e of ``stack`` (E, H, W) moved by ``shifts[e] = (dy, dx)`` pixels:
    ``out_e(y, x) = stack_e(y - dy, x - dx)``, bilinear, reflected at the borders."""
    n, h, w = stack.shape
    ys = np.arange(h)[None, :] - shifts[:, :1]  # (E, H)
    xs = np.arange(w)[None, :] - shifts[:, 1:]  # (E, W)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = (ys - y0)[:, :, None], (xs - x0)[:, None, :]
    e = np.arange(n)[:, None, None]
    ya, yb = _reflect(y0, h)[:, :, None], _reflect(y0 + 1, h)[:, :, None]
    xa, xb = _reflect(x0, w)[:, None, :], _reflect(x0 + 1, w)[:, None, :]
    return ((1 - fy) * ((1 - fx) * stack[e, ya, xa] + fx * stack[e, ya, xb])
            + fy * ((1 - fx) * stack[e, yb, xa] + fx * stack[e, yb, xb]))


class GainNoise(Operator):
    """Detector gain fluctuation, multiplicative per pixel, on top of the counts' shot noise.

    ``out = g * in``, ``g ~ Gamma(k = 1 / sigma^2, scale = sigma^2)`` i.i.d. per pixel and
    energy: mean 1, relative standard deviation ``sigma`` (``relative_sigma``), never negative.
    ``g`` is the pixel's effective gain: the spread of the scintillator/photomultiplier pulse
    heights or of the diode's charge per electron, averaged over the pixel's electrons, plus gain
    flicker. It adds the variance ``sigma^2 in^2``; the shot noise is already in ``in``.

    Typical values: the detective quantum efficiency ``DQE = (SNR_out / SNR_in)^2`` of SEM
    electron detectors is below 1 and spans a wide range even within one detector class
    (Goldstein et al., "Scanning Electron Microscopy and X-Ray Microanalysis", 4th ed.,
    Springer 2018, ch. 5 and its Table 5.1; Joy, Joy, Bunn, "Measuring the performance of
    scanning electron microscope detectors", Scanning 18, 533, 1996). A gain spread ``sigma``
    alone gives ``DQE = 1 / (1 + sigma^2 n y)`` at ``n y`` detected electrons per pixel; the per-pixel
    relative spreads 2 / 5 / 10 % of the levels are assumed, not measured.
    """

    code = 2
    name = "gain_noise"

    def __init__(self, relative_sigma: float):
        self.relative_sigma = _check_number("gain noise relative_sigma", relative_sigma)

    def params(self) -> dict:
        return {"relative_sigma": self.relative_sigma}

    def draw(self, rng, shape) -> dict:
        s2 = self.relative_sigma ** 2
        return {"gain": np.ones(shape) if s2 == 0 else rng.gamma(1.0 / s2, s2, size=shape)}

    def apply(self, stack, draw):
        return stack * draw["gain"]


class ReadoutNoise(Operator):
    """Additive Gaussian readout noise, in yield units (electrons per primary).

    ``out = in + sigma * n``, ``n ~ N(0, 1)`` i.i.d. per pixel and energy. A readout noise of
    ``r`` detected electrons at a read dose of ``N`` primaries per pixel is ``sigma = r / N``.
    Typical values: the amplifier and digitiser noise of a BSE detector chain is small against
    the shot noise at high dose; the levels (0.005 / 0.01 / 0.02 yield, i.e. 0.3 / 0.6 / 1.2
    electrons at 60 primaries per pixel) are assumed.
    """

    code = 3
    name = "readout_noise"

    def __init__(self, sigma: float):
        self.sigma = _check_number("readout noise sigma", sigma)

    def params(self) -> dict:
        return {"sigma": self.sigma}

    def draw(self, rng, shape) -> dict:
        return {"noise": rng.standard_normal(size=shape) * self.sigma}

    def apply(self, stack, draw):
        return stack + draw["noise"]


class BrightnessContrast(Operator):
    """Unknown per-energy affine detector response (the microscope's brightness and contrast).

    ``out_e = a_e * in_e + b_e``, ``a_e ~ U(gain_range)``, ``b_e ~ U(offset_range)`` (yield
    units), independent per energy, every energy including the first. Typical values: assumed
    (operators and automatic brightness/contrast set the detector gain and black level per
    image; only ratios within one image are then meaningful).
    """

    code = 4
    name = "brightness_contrast"

    def __init__(self, gain_range=(0.9, 1.1), offset_range=(-0.02, 0.02)):
        self.gain_range = _check_range("brightness/contrast gain_range", gain_range, low=0.0)
        self.offset_range = _check_range("brightness/contrast offset_range", offset_range)

    def params(self) -> dict:
        return {"gain_range": list(self.gain_range), "offset_range": list(self.offset_range)}

    def draw(self, rng, shape) -> dict:
        return {"gain": rng.uniform(*self.gain_range, size=shape[0]),
                "offset": rng.uniform(*self.offset_range, size=shape[0])}

    def apply(self, stack, draw):
        return stack * draw["gain"][:, None, None] + draw["offset"][:, None, None]

    def summary(self, draw) -> dict:
        return {"gain": np.round(draw["gain"], 6).tolist(), "offset": np.round(draw["offset"], 6).tolist()}


OPERATORS = {cls.name: cls for cls in (Drift, GainNoise, ReadoutNoise, BrightnessContrast)}


class Acquisition:
    """Operators applied in order: ``Acquisition([Drift(0.5), GainNoise(0.05)])(bse, seed, index)``.

    ``out = clip(op_K(... op_1(bse)), 0, 1)``; ``clip=True`` (default) keeps yields in [0, 1]
    (readers such as ``reconstruct`` refuse others); ``clip=False`` returns the raw result.
    """

    def __init__(self, operators=(), clip: bool = True):
        self.operators = list(operators)
        for op in self.operators:
            if not isinstance(op, Operator):
                raise ValueError(f"an Acquisition holds operators, got {op!r}")
        self.clip = bool(clip)

    def run(self, bse, seed: int = 0, index=0) -> tuple[np.ndarray, list[dict]]:
        """(degraded float32 array of ``bse``'s shape, the recorded draws of each sample)."""
        array = check_bse(bse)
        out, draws = np.empty(array.shape, dtype=np.float32), []
        for n, i in enumerate(_indices(index, array.shape[0])):
            stack, record = array[n], {}
            for position, op in enumerate(self.operators):
                draw = op.draw(op.generator(seed, i, position), stack.shape)
                stack = op.apply(stack, draw)
                record.update({f"{op.name}.{k}": v for k, v in op.summary(draw).items()})
            out[n] = np.clip(stack, *YIELD_RANGE) if self.clip else stack
            draws.append(record)
        return (out if np.ndim(bse) == 4 else out[0]), draws

    def __call__(self, bse, seed: int = 0, index=0):
        """Degrade ``bse`` (numpy (E, H, W) / (N, E, H, W), or a torch tensor, returned as one)."""
        if type(bse).__module__.startswith("torch"):
            import torch

            out = self.run(bse.detach().cpu().numpy(), seed, index)[0]
            return torch.from_numpy(out).to(device=bse.device, dtype=bse.dtype)
        return self.run(bse, seed, index)[0]

    def describe(self) -> dict:
        """``{"model": "acquisition", "version", "operators": [op.describe(), ...] in order, "clip"}``."""
        return {"model": "acquisition", "version": RECORD_VERSION,
                "operators": [op.describe() for op in self.operators], "clip": self.clip}

    def __eq__(self, other) -> bool:
        return isinstance(other, Acquisition) and self.describe() == other.describe()

    def __repr__(self) -> str:
        return f"Acquisition({self.operators!r}, clip={self.clip})"


def from_record(record: dict):
    """The operator or :class:`Acquisition` that ``describe()`` recorded."""
    if not isinstance(record, dict):
        raise ValueError(f"an acquisition record is a dict, got {type(record).__name__}")
    if record.get("version", RECORD_VERSION) != RECORD_VERSION:
        raise ValueError(f"acquisition record version {record.get('version')} is not {RECORD_VERSION}")
    if record.get("model") == "acquisition":
        return Acquisition([from_record(r) for r in record.get("operators", [])], clip=record.get("clip", True))
    params = {k: v for k, v in record.items() if k not in ("op", "version")}
    cls = look_up("acquisition operator", record.get("op"), OPERATORS)
    try:
        return cls(**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for acquisition operator '{cls.name}': {err}") from err


#: the realism study's levels: degradation -> {level name: operator}, each applied alone to ideal
#: data: drift RMS 0.25 / 0.5 / 1 nm (1 nm pixels); gain spread 2 / 5 / 10 %; readout sigma
#: 0.005 / 0.01 / 0.02 yield; brightness-g: contrast a_e ~ U(1 - g, 1 + g), offset b_e ~ U(-g/5, g/5)
DEGRADATIONS = {
    "drift": {f"drift-{a:g}nm": Drift(a) for a in (0.25, 0.5, 1.0)},
    "gain_noise": {f"gain-{round(100 * s)}pct": GainNoise(s) for s in (0.02, 0.05, 0.10)},
    "readout_noise": {f"readout-{s:g}": ReadoutNoise(s) for s in (0.005, 0.01, 0.02)},
    "brightness_contrast": {f"brightness-{round(100 * g)}pct": BrightnessContrast((1 - g, 1 + g), (-g / 5, g / 5))
                            for g in (0.05, 0.10, 0.20)},
}
#: every named level: name -> operator
LEVELS = {name: op for table in DEGRADATIONS.values() for name, op in table.items()}


def level(name: str) -> Acquisition:
    """The :class:`Acquisition` of one named level (``drift-0.5nm``, ``gain-5pct``, ...)."""
    return Acquisition([look_up("acquisition level", name, LEVELS)])


# ------------------------------------------------------------------------------------------ conditions
#: the paper's ideal acquisition (the simulator's defaults): a point beam at every pixel centre,
#: every electron above the cutoff counted at a plane, 1 nm pixels, no drift, no operator of this
#: module applied. What a model was trained on unless its ``method.json`` records otherwise.
IDEAL_CONDITIONS = {"probe_fwhm_nm": 0.0, "detector": "plane", "pixel_nm": 1.0, "drift_nm": 0.0,
                    "image_operators": []}


def recorded_conditions(meta: dict) -> dict:
    """The acquisition conditions a stack's metadata record (keys of :data:`IDEAL_CONDITIONS`,
    None where not recorded): ``probe`` ``{"fwhm_nm"}`` or ``probe_fwhm_nm``; ``detector`` (a name,
    or ``datasets.detectors`` record with ``kind``); ``scene.voxel_nm`` or ``pixel_nm``; this module's ``acquisition``
    record (RMS sum of its drift amplitudes, its other operators' records)."""
    probe, detector, scene = meta.get("probe"), meta.get("detector"), meta.get("scene")
    record = meta.get("acquisition")
    drift = operators = None
    if isinstance(record, dict) and record.get("model") == "acquisition":
        records = record.get("operators", [])
        drift = math.sqrt(sum(float(r["amplitude_nm"]) ** 2 for r in records if r.get("op") == "drift"))
        operators = [r for r in records if r.get("op") != "drift"]
    return {"probe_fwhm_nm": probe.get("fwhm_nm") if isinstance(probe, dict) else meta.get("probe_fwhm_nm"),
            "detector": detector.get("kind") if isinstance(detector, dict) else detector,
            "pixel_nm": scene.get("voxel_nm") if isinstance(scene, dict) else meta.get("pixel_nm"),
            "drift_nm": drift, "image_operators": operators}


def stack_conditions(meta: dict, simulated: bool, **given) -> dict:
    """A stack's acquisition conditions: the values ``given`` (a user's microscope: ``probe_fwhm_nm``,
    ``detector``, ``pixel_nm``; None = not given) first, then those its metadata record, then for a
    simulated stack the simulator's ideal defaults (new options are recorded only when set); None
    where nothing is known."""
    unknown = set(given) - set(IDEAL_CONDITIONS)
    if unknown:
        raise ValueError(f"unknown acquisition conditions {sorted(unknown)}; known: {', '.join(IDEAL_CONDITIONS)}")
    recorded = recorded_conditions(meta)
    out = {}
    for key, ideal in IDEAL_CONDITIONS.items():
        value = given.get(key)
        value = recorded[key] if value is None else value
        out[key] = ideal if value is None and simulated else value
    return out


def condition_differences(stack: dict, trained: dict) -> list[str]:
    """Phrases naming each condition known on both sides that differs (numbers to 1e-6 nm)."""
    units = {"probe_fwhm_nm": ("probe FWHM", " nm"), "pixel_nm": ("pixel", " nm"), "drift_nm": ("drift", " nm")}
    out = []
    for key in IDEAL_CONDITIONS:
        a, b = stack.get(key), trained.get(key)
        if a is None or b is None:
            continue
        if key in units and abs(float(a) - float(b)) > 1e-6:
            label, unit = units[key]
            out.append(f"{label} {float(a):g}{unit} (trained: {float(b):g}{unit})")
        elif key == "detector" and str(a).lower() != str(b).lower():
            out.append(f"detector '{a}' (trained: '{b}')")
        elif key == "image_operators" and a != b:
            names = ", ".join(r.get("op", "?") for r in a) or "none"
            out.append(f"image degradations {names} (trained: {', '.join(r.get('op', '?') for r in b) or 'none'})")
    return out
