"""The scaling study's analysis: learning curves IoU(N) = a - b N^-c per model, their bootstrap
intervals, the extrapolation to the paper's N, where two curves cross, and the paired U-Net -
BSE-VoxNets difference at each N.

Every interval resamples the evaluation geometries (one common evaluation set: every model and N
is scored on the same samples, so one resample of the samples is applied to all of them, which
pairs the models). At each N a model's score on a sample is the mean over its seeds.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from datasets.stats import bootstrap_mean_interval, paired_difference_interval

#: the paper's training-set size, where the curves are extrapolated to
PAPER_N = 10_000
#: bounds of (a, b, c): a is an IoU; c > 0 keeps the curve rising
BOUNDS = ([0.0, 0.0, 0.01], [1.0, np.inf, 3.0])
#: the pair of networks whose difference the study reports (first minus second)
PAIR = ("unet3d", "bsevox")


def power_law(n, a: float, b: float, c: float):
    """IoU(N) = a - b N^-c."""
    return a - b * np.power(np.asarray(n, dtype=float), -c)


def fit_power_law(n, iou) -> np.ndarray:
    """Least-squares (a, b, c) of :func:`power_law` through the points (``BOUNDS``); at least 3 N."""
    n, iou = np.asarray(n, dtype=float), np.asarray(iou, dtype=float)
    if len(np.unique(n)) < 3:
        raise ValueError(f"a power-law fit needs at least 3 training-set sizes, got {sorted(set(n))}")
    a0 = min(1.0, float(iou.max()) + 0.05)
    b0 = max((a0 - float(iou.min())) * float(n.min()) ** 0.5, 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(power_law, n, iou, p0=(a0, b0, 0.5), bounds=BOUNDS, maxfev=20_000)
    return params


def curve_matrix(rows: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """One model's rows -> (N values, evaluation sample ids, IoU matrix (len N, samples)): the
    mean IoU over seeds of each sample at each N."""
    table = rows.groupby(["n_train", "sample"])["iou"].mean().unstack("sample").sort_index()
    if table.isna().any().any():
        raise ValueError("every training-set size must be scored on the same evaluation samples")
    return table.index.to_numpy(dtype=float), list(table.columns), table.to_numpy(dtype=float)


def resample_indices(n_samples: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_samples) bootstrap draws of the evaluation samples, shared by all models."""
    return np.random.default_rng(seed).integers(0, n_samples, size=(n_resamples, n_samples))


def bootstrap_fits(n: np.ndarray, matrix: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(a, b, c) refitted on each resample of the samples (rows of NaN where a fit failed)."""
    out = np.full((len(draws), 3), np.nan)
    for i, idx in enumerate(draws):
        try:
            out[i] = fit_power_law(n, matrix[:, idx].mean(axis=1))
        except (RuntimeError, ValueError):
            continue
    return out


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [math.nan, math.nan]
    alpha = (1.0 - confidence) / 2.0
    return [float(v) for v in np.quantile(values, [alpha, 1.0 - alpha])]


def model_fit(n: np.ndarray, matrix: np.ndarray, draws: np.ndarray, confidence: float = 0.95,
              target: int = PAPER_N) -> dict:
    """The fit of one model: (a, b, c) and IoU(target), each with its bootstrap interval, and the
    resampled parameters (``"resampled"``, for the crossing analysis)."""
    params = fit_power_law(n, matrix.mean(axis=1))
    resampled = bootstrap_fits(n, matrix, draws)
    at_target = power_law(target, *resampled.T)
    fit = {name: {"value": float(value), "interval": _interval(resampled[:, i], confidence)}
           for i, (name, value) in enumerate(zip("abc", params))}
    fit["extrapolated"] = {"n": int(target), "iou": float(power_law(target, *params)),
                           "interval": _interval(at_target, confidence)}
    fit["failed_resamples"] = int(np.isnan(resampled[:, 0]).sum())
    fit["resampled"] = resampled
    return fit


def crossings(params_first, params_second, n_min: float, n_max: float = 1e6) -> list[float]:
    """Training-set sizes in [n_min, n_max] where two fitted curves cross (sign changes of their
    difference on a log grid of 2000 points; each reported at the grid point after the change)."""
    grid = np.geomspace(n_min, n_max, 2000)
    diff = power_law(grid, *params_first) - power_law(grid, *params_second)
    changes = np.flatnonzero(np.sign(diff[1:]) * np.sign(diff[:-1]) < 0)
    return [float(grid[i + 1]) for i in changes]


def point_table(rows: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """mIoU with its interval per (network, config, size, N): the learning curves' points."""
    records = []
    for (network, config, size, n_train), group in rows.groupby(["network", "config", "size", "n_train"]):
        per_sample = group.groupby("sample")["iou"].mean()
        interval = bootstrap_mean_interval(per_sample.to_numpy(), confidence=confidence, seed=seed)
        records.append({"network": network, "config": config, "size": size, "n_train": int(n_train),
                        "seeds": int(group["seed"].nunique()), "miou": interval.mean,
                        "low": interval.low, "high": interval.high, "n_samples": interval.n})
    return pd.DataFrame(records)


def paired_table(rows: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """At each (size, N): the paired U-Net - BSE-VoxNets mean IoU difference on the evaluation
    samples (each network's seeds averaged first) with its bootstrap interval."""
    records = []
    first, second = PAIR
    for (size, n_train), group in rows.groupby(["size", "n_train"]):
        per_sample = group.groupby(["network", "sample"])["iou"].mean().unstack("network")
        if first not in per_sample or second not in per_sample:
            continue
        diff = paired_difference_interval(per_sample[first].to_numpy(), per_sample[second].to_numpy(),
                                          confidence=confidence, seed=seed)
        records.append({"size": size, "n_train": int(n_train), "difference": diff.mean, "low": diff.low,
                        "high": diff.high, "n_samples": diff.n})
    return pd.DataFrame(records)


def _pair_analysis(fits: dict, models: pd.DataFrame, confidence: float, target: int) -> list[dict]:
    """Per size: where the pair's curves cross, and their extrapolated difference at ``target``."""
    out = []
    for size, group in models.groupby("size"):
        names = dict(zip(group["network"], group["model"]))
        if not all(net in names and names[net] in fits for net in PAIR):
            continue
        first, second = fits[names[PAIR[0]]], fits[names[PAIR[1]]]
        point = [[first[k]["value"] for k in "abc"], [second[k]["value"] for k in "abc"]]
        diff = power_law(target, *first["resampled"].T) - power_law(target, *second["resampled"].T)
        out.append({"size": size, "first": names[PAIR[0]], "second": names[PAIR[1]],
                    "crossings_n": crossings(*point, n_min=float(group["n_min"].min())),
                    "difference_at_target": {"n": int(target), "value": float(power_law(target, *point[0])
                                                                             - power_law(target, *point[1])),
                                             "interval": _interval(diff, confidence)}})
    return out


def analyse(rows: pd.DataFrame, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
            target: int = PAPER_N) -> dict:
    """``fits.json``: per model (``network/config``) its power-law fit and extrapolation, per size
    the crossing and extrapolated difference of the pair, the curve points and paired differences."""
    fits, models = {}, []
    draws = first_samples = None
    for (network, config, size), group in rows.groupby(["network", "config", "size"]):
        n, samples, matrix = curve_matrix(group)
        name = f"{network}/{config}"
        models.append({"network": network, "config": config, "size": size, "model": name, "n_min": n.min()})
        if draws is None:  # one set of resamples for every model: the models stay paired
            draws, first_samples = resample_indices(len(samples), n_resamples, seed), samples
        if samples != first_samples:
            raise ValueError(f"{name} was scored on other evaluation samples than the first model")
        if len(n) >= 3:
            fits[name] = {"network": network, "config": config, "size": size,
                          "parameters": int(group["parameters"].iloc[0]), "n_train": [int(v) for v in n],
                          **model_fit(n, matrix, draws, confidence, target)}
    pairs = _pair_analysis(fits, pd.DataFrame(models), confidence, target) if models else []
    for fit in fits.values():
        fit.pop("resampled")
    return {"model": "IoU(N) = a - b N^-c", "confidence": confidence, "n_resamples": n_resamples, "seed": seed,
            "fits": fits, "pairs": pairs, "points": point_table(rows, confidence, seed).to_dict("records"),
            "paired_differences": paired_table(rows, confidence, seed).to_dict("records")}


def _cell(value: float, interval) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def format_tables(analysis: dict) -> str:
    """The analysis as plain-text tables (learning-curve fits, pairs, paired differences)."""
    lines = ["Learning curves: mIoU on the evaluation set (seeds averaged per sample):",
             f"{'model':<18} {'N':>6} {'seeds':>5} {'mIoU':>26}"]
    for rec in analysis["points"]:
        lines.append(f"{rec['network'] + '/' + rec['config']:<18} {rec['n_train']:>6} {rec['seeds']:>5} "
                     f"{_cell(rec['miou'], (rec['low'], rec['high'])):>26}")
    lines += ["", "Power-law fits IoU(N) = a - b N^-c (bootstrap intervals over the evaluation samples):",
             f"{'model':<18} {'params':>9} {'a':>24} {'c':>24} {'IoU at N=10,000':>24}"]
    for name, fit in analysis["fits"].items():
        lines.append(f"{name:<18} {fit['parameters']:>9,} {_cell(fit['a']['value'], fit['a']['interval']):>24} "
                     f"{_cell(fit['c']['value'], fit['c']['interval']):>24} "
                     f"{_cell(fit['extrapolated']['iou'], fit['extrapolated']['interval']):>24}")
    for pair in analysis["pairs"]:
        at = pair["difference_at_target"]
        where = ", ".join(f"{n:,.0f}" for n in pair["crossings_n"]) or "nowhere in [smallest N, 1e6]"
        lines.append(f"size {pair['size']}: {pair['first']} - {pair['second']} at N={at['n']:,}: "
                     f"{_cell(at['value'], at['interval'])}; curves cross at N = {where}")
    lines += ["", f"Paired {PAIR[0]} - {PAIR[1]} IoU difference on the evaluation set:",
              f"{'size':<8} {'N':>6} {'difference':>26}"]
    for rec in analysis["paired_differences"]:
        lines.append(f"{rec['size']:<8} {rec['n_train']:>6} {_cell(rec['difference'], (rec['low'], rec['high'])):>26}")
    return "\n".join(lines)
