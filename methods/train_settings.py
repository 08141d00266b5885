"""What defines a training run besides the network and the data: ``TrainSettings``, the
training presets, and the run config saved in checkpoints (and compared when a run resumes or a
saved model is reused)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from methods.base import Method
from methods.losses import PAPER_LAMBDA


@dataclass(frozen=True)
class TrainSettings:
    """Everything that defines a training run besides the network and the data."""

    epochs: int = 250
    batch_size: int = 32
    lr: float = 1e-4  # initial AdamW learning rate, cosine-annealed to 0 over ``epochs``
    weight_decay: float = 1e-4
    lam: float = PAPER_LAMBDA  # WBCE weight of the positive (Cu) term, equation 1
    lovasz_fraction: float = 0.2  # last fraction of the epochs trained with the Lovász hinge
    eval_every: int = 5  # epochs between validation evaluations (the last epoch is always evaluated)
    patience: int = 100  # early stop after this many epochs without a better validation mIoU
    seed: int = 0  # network init and shuffling
    device: str = "cpu"
    amp: bool = True  # mixed precision autocast (CUDA only)
    amp_dtype: str = "float16"  # float16 (with grad scaling) or bfloat16 (no scaling needed)
    compile: bool = False  # torch.compile the network for training and inference (CUDA only)
    augment: bool = False  # each sample under a random one of the scene's 8 symmetries (methods.symmetry)
    #: when the data are read below their simulated dose (a dataset's ``read_electrons_per_pixel``),
    #: every epoch sees a fresh exact draw at the read dose thinned from the stored counts
    #: (``datasets.dose``), instead of the one fixed draw per sample that validation and test use
    fresh_noise: bool = True
    #: image degradations as on-the-fly augmentation (``datasets.realism.AUGMENTATIONS``:
    #: ``"realism"``, random drift, gain and readout noise, brightness/contrast per sample); None: off
    acquisition_augment: str | None = None
    #: convolution weights and input batches in channels-last memory order: a speed setting (the
    #: same values; results equal up to float rounding), like ``amp`` and ``compile``
    channels_last: bool = False

    def lovasz_start(self) -> int:
        """First epoch (1-based) trained with the Lovász hinge."""
        return self.epochs - int(round(self.lovasz_fraction * self.epochs)) + 1


#: "smoke": seconds, for tests; "quick": a CPU run of the tiny configs on the quick dataset
#: (<= 10 min on 2 cores); "paper": the paper's settings (section III).
TRAIN_PRESETS: dict[str, TrainSettings] = {
    "smoke": TrainSettings(epochs=3, batch_size=4, lr=2e-3, weight_decay=1e-4, eval_every=1,
                           patience=1000, lam=0.5, augment=True),
    # channels_last: 1.39x (BSE-VoxNets tiny) and 1.20x (U-Net matched) the eager training steps per
    # second on the project's 2-core Xeon (`methods train-bench`), validation mIoU paired with the
    # eager seed-0 models 0.6545 vs 0.6558 and 0.7086 vs 0.7094 (README, Training speed)
    "quick": TrainSettings(epochs=30, batch_size=32, lr=3e-3, weight_decay=1e-4, eval_every=2,
                           patience=10, lam=0.5, augment=True, channels_last=True),
    "paper": TrainSettings(epochs=250, batch_size=32, lr=1e-4, weight_decay=1e-4, eval_every=5,
                           patience=100, lam=PAPER_LAMBDA),
    # the paper preset fitted into one GPU call (benchmark preset "paper"): the paper's lr and
    # weight decay, bf16 autocast, a compiled network and 4x the paper's batch for throughput;
    # lambda 0.5 is the quick preset's (the paper's 1/12 with a 0.5 threshold under-segments at
    # quick scale; see the README), epochs cut by the run's time budget
    "paper-gpu": TrainSettings(epochs=250, batch_size=128, lr=1e-4, weight_decay=1e-4, eval_every=5,
                               patience=100, lam=0.5, amp_dtype="bfloat16", compile=True, augment=True),
}
#: the ``standard`` benchmark preset (3,240 training geometries): the quick recipe for the scaling
#: study's step budget at that N, clip(800 x (N/1000)^0.5) = 1,440 steps = 14 epochs of 102
#: batches (tests/test_presets.py checks it against ``benchmark.scaling_study``'s rule)
TRAIN_PRESETS["standard"] = replace(TRAIN_PRESETS["quick"], epochs=14)
#: the scaling study's jobs (``benchmark.scaling_study``): the quick recipe without early stopping,
#: so every job runs the study's step budget to its end, Lovász phase included (quick's patience of
#: 10 epochs would stop the 100-epoch small-N jobs before it); validation still picks the checkpoint
TRAIN_PRESETS["study"] = replace(TRAIN_PRESETS["quick"], patience=1_000_000)

#: settings that may differ between a run and its resumption
RESUMABLE_DIFFERENCES = {"device", "amp", "amp_dtype", "compile", "channels_last"}


def run_config(method: Method, settings: TrainSettings, n_train: int) -> dict:
    return {
        "method": method.name,
        "params": {k: v for k, v in method.params.items()
                   if k not in method.hyperparams or method.hyperparams[k].retrain},
        "settings": asdict(settings),
        "n_train": int(n_train),
    }


def config_differences(saved: dict, current: dict) -> list[str]:
    diffs = []
    if saved.get("method") != current["method"]:
        diffs.append(f"method {saved.get('method')!r} != {current['method']!r}")
    for key, value in current["params"].items():
        if saved.get("params", {}).get(key) != value and key not in ("preset",):
            diffs.append(f"param {key}: {saved.get('params', {}).get(key)!r} != {value!r}")
    for key, value in current["settings"].items():
        before = saved.get("settings", {}).get(key)
        if key not in RESUMABLE_DIFFERENCES and before != value:
            diffs.append(f"setting {key}: {before!r} != {value!r}")
    if saved.get("n_train") != current["n_train"]:
        diffs.append(f"training samples: {saved.get('n_train')} != {current['n_train']}")
    return diffs
