"""Benchmark presets: which data, which training, which network sizes, how to time.

A preset ties together a dataset preset (``datasets.presets.DATASET_PRESETS``), a training
preset (``methods.training.TRAIN_PRESETS``), the network configs to benchmark per method, and
the timing/statistics settings. Results of a preset live under ``outputs/<preset>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets.errors import look_up

#: the value of the ``config`` column for a method without network configs (MED-SEM)
NO_CONFIG = "default"


@dataclass(frozen=True)
class BenchmarkPreset:
    """One benchmark setting.

    ``configs`` maps a learned method to the network configs to run (``methods`` not listed
    there run with their defaults); ``ablation_config`` is the BSE-VoxNets config whose Table 1
    variants are trained for the ``ablation`` case. Inference time is the median of
    ``timing_repeats`` calls after ``timing_warmup`` untimed ones. ``batch_size`` is the
    number of volumes reconstructed per call when scoring a case.
    """

    name: str
    description: str
    dataset_preset: str
    train_preset: str
    configs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ablation_config: str = "tiny"
    timing_repeats: int = 5
    timing_warmup: int = 1
    batch_size: int = 8
    bootstrap_resamples: int = 2000
    seed: int = 0
    #: learned methods average their predictions over the scene's 8 symmetries (test-time
    #: averaging; the ``tta`` parameter, recorded in every run's parameters and rows)
    tta: bool = False
    #: on CPU, learned models train in this many processes at once (one torch thread each)
    train_workers: int = 1
    #: (method, config) in the order the main job trains them when time is short (a time
    #: budget): these first, in this order, then the rest of the plan, the ablation last
    train_order: tuple[tuple[str, str], ...] = ()
    #: more training seeds of every learned method's benchmarked configs (full variant): the main
    #: job also trains them and runs them on the test split and the named cases, so the report
    #: gives the mean and spread over seeds (``seed`` + ``extra_seeds``); the other tables and
    #: figures show the preset's ``seed``
    extra_seeds: tuple[int, ...] = ()
    #: the realism case also scores, beside each learned model, its robust twin: the same network
    #: trained with the image degradations as augmentation (variant ``robust``, the methods'
    #: ``training_variants``); the main job trains it
    robust_training: bool = False
    #: the realism case's levels the main job runs (names of ``datasets.realism``); empty: all
    realism_levels: tuple[str, ...] = ()

    def configs_for(self, method: str) -> tuple[str, ...]:
        """The network configs to benchmark for ``method`` (``("default",)`` for MED-SEM)."""
        return self.configs.get(method, (NO_CONFIG,))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "dataset_preset": self.dataset_preset,
            "train_preset": self.train_preset,
            "configs": {k: list(v) for k, v in self.configs.items()},
            "ablation_config": self.ablation_config,
            "timing_repeats": self.timing_repeats,
            "timing_warmup": self.timing_warmup,
            "batch_size": self.batch_size,
            "bootstrap_resamples": self.bootstrap_resamples,
            "seed": self.seed,
            **({"tta": True} if self.tta else {}),
            **({"extra_seeds": list(self.extra_seeds)} if self.extra_seeds else {}),
            **({"robust_training": True} if self.robust_training else {}),
            **({"realism_levels": list(self.realism_levels)} if self.realism_levels else {}),
            # only where set, so presets without it keep their run keys (and their cached runs)
            **({"train_order": [list(item) for item in self.train_order]} if self.train_order else {}),
        }


def _preset(name: str, description: str, **settings) -> BenchmarkPreset:
    """A preset reading the dataset preset and the training preset of its own name, unless
    ``settings`` name others."""
    return BenchmarkPreset(**{"name": name, "description": description, "dataset_preset": name,
                              "train_preset": name, **settings})


BENCHMARK_PRESETS: dict[str, BenchmarkPreset] = {preset.name: preset for preset in (
    _preset("smoke", "tests and CI: a handful of samples, tiny networks, a few training steps "
                     "(seconds to a few minutes on 2 CPU cores; numbers are meaningless)",
            configs={"bsevox": ("tiny",), "unet3d": ("tiny",)}, timing_repeats=2, bootstrap_resamples=200,
            # one level of each degradation (three of them simulated), not all 20: CI time
            realism_levels=("ideal", "resimulated", "probe-2nm", "detector-annular", "drift-1nm", "gain-5pct",
                            "readout-0.01", "brightness-20pct")),
    # U-Net "matched" (0.30 M parameters) against BSE-VoxNets "tiny" (0.28 M): like for like;
    # "small" (1.19 M) is 0.013 better on validation (0.713 vs 0.700) at 1.5x the training time
    _preset("quick", "the CPU benchmark (nox -s benchmark): the quick dataset, tiny BSE-VoxNets "
                     "and the 3D U-Net of matched parameter count, 3 training seeds each, on 2 CPU cores",
            configs={"bsevox": ("tiny",), "unet3d": ("matched",)}, tta=True, train_workers=2, extra_seeds=(1, 2),
            robust_training=True),
    # chosen from the scaling study (docs/studies.md): at N = 4,000 both 0.3 M networks gain
    # 0.03-0.04 mIoU over N = 1,000; scaled from the cold quick run's stage times, this run takes
    # about 1 h 45 min to 2 h on the 2-core Xeon (an estimate, not a measured end-to-end run)
    _preset("standard", "a workstation run (2 CPU cores, about 2 hours, estimated): the quick design with 4,000 "
                        "geometries and the scaling study's training-step budget for 3,240 of them",
            configs={"bsevox": ("tiny",), "unet3d": ("matched",)}, tta=True, train_workers=2, extra_seeds=(1, 2),
            robust_training=True),
    _preset("paper", "the paper's setting (GPU): 10,000 training geometries, BSE-VoxNets "
                     "lite..moderate (Table 2) and the base 3D U-Net, sized for one GPU call "
                     "(train preset paper-gpu: bf16, compiled, batch 128; use --time-budget)",
            train_preset="paper-gpu",
            configs={"bsevox": ("lite", "small", "medium", "moderate"), "unet3d": ("base",)},
            ablation_config="lite", timing_repeats=10, timing_warmup=2, batch_size=16,
            train_order=(("bsevox", "lite"), ("bsevox", "moderate"), ("unet3d", "base"), ("bsevox", "small"),
                         ("bsevox", "medium"))),
)}


def get_preset(name: str) -> BenchmarkPreset:
    """The benchmark preset called ``name``; the error lists the known ones."""
    if isinstance(name, BenchmarkPreset):
        return name
    return look_up("preset", name, BENCHMARK_PRESETS)
