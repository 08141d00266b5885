"""One training loop for both learned methods (BSE-VoxNets and the MONAI 3D U-Net).

Paper section III: AdamW, cosine-annealed learning rate, weighted BCE (equation 1) and then
Lovász-hinge fine-tuning for the last part of the epochs, validation mIoU every 5 epochs, early
stopping. Checkpoints (``latest.pt``, ``best.pt``) hold everything needed to resume exactly:
model, optimizer, scheduler, AMP scaler, epoch, RNG states and the run config.

Checkpoints live in ``methods/checkpoints.py``, the learned methods' base class in
``methods/network.py``, the grid search in ``methods/grid_search.py``, toy data in ``methods/toys.py``.

A trained model directory holds ``method.json``, ``best.pt``, ``latest.pt``, ``history.csv``
(epoch, train_loss, val_miou, lr, seconds, loss), ``training_curve.png`` and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from datasets.budget import past
from datasets.dose import thin_to_dose
from datasets.errors import look_up
from datasets.files import atomic_path, write_text_atomic
from datasets.protocol import Dataset
from datasets.realism import augment_image_degradations, augmentation_record
from methods import symmetry
from methods.binarize import choose_threshold
from methods.checkpoints import (
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from methods.losses import lovasz_hinge, weighted_bce
from methods.train_settings import TRAIN_PRESETS, TrainSettings, config_differences, run_config

__all__ = ["TRAIN_PRESETS", "TrainSettings", "Trainer", "mean_iou", "stack_split", "train", "train_on_splits"]


# ---------------------------------------------------------------------------- metric
def mean_iou(logits: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over samples of IoU(sigmoid(logits) > threshold, labels); an empty union counts 1."""
    pred = torch.sigmoid(logits.float()) > threshold
    gt = labels > 0.5
    inter = (pred & gt).flatten(1).sum(1).double()
    union = (pred | gt).flatten(1).sum(1).double()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return float(iou.mean())


# ---------------------------------------------------------------------------- data
def stack_split(split, progress: bool = False, desc: str = "loading") -> tuple[torch.Tensor, torch.Tensor]:
    """Read a split (a Dataset of {"bse", "label"} dicts, or a (bse, labels) tuple of arrays) into
    two tensors (N,E,H,W), (N,D,H,W).

    The splits are small (10,000 samples of 20x20x20 floats = 32 MB), so training reads each
    sample once; any per-sample noise of the split is drawn once here.
    """
    if isinstance(split, tuple):  # (bse (N,E,H,W), labels (N,D,H,W)) arrays, e.g. from ds.arrays()
        x = torch.as_tensor(np.asarray(split[0]), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(split[1]), dtype=torch.float32)
    else:
        bse, labels = [], []
        for i in tqdm(range(len(split)), desc=desc, disable=not progress, leave=False):
            item = split[i]
            bse.append(torch.as_tensor(np.asarray(item["bse"]), dtype=torch.float32))
            labels.append(torch.as_tensor(np.asarray(item["label"]), dtype=torch.float32))
        if not bse:
            raise ValueError("empty data split")
        x, y = torch.stack(bse), torch.stack(labels)
    if len(x) == 0:
        raise ValueError("empty data split")
    if x.ndim != 4 or y.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"bad split shapes: bse {tuple(x.shape)}, label {tuple(y.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("BSE images contain NaN or infinite values")
    return x, y


def to_channels_last(net: nn.Module) -> nn.Module:
    """``net`` with its convolution weights in channels-last memory order (4-D: ``channels_last``,
    5-D: ``channels_last_3d``): the same values, faster convolutions on CPU (``methods train-bench``)."""
    for param in net.parameters():
        if param.dim() in (4, 5):
            layout = torch.channels_last if param.dim() == 4 else torch.channels_last_3d
            param.data = param.data.contiguous(memory_format=layout)
    return net


def _predict_logits(net: nn.Module, x: torch.Tensor, device: str, batch_size: int,
                    amp: bool, amp_dtype: str = "float16") -> torch.Tensor:
    net.eval()
    out = []
    with torch.no_grad(), _autocast(device, amp, amp_dtype):
        for start in range(0, len(x), batch_size):
            out.append(net(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(out)


AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _autocast(device: str, amp: bool, amp_dtype: str = "float16"):
    """Mixed-precision autocast on CUDA (``amp_dtype`` float16 or bfloat16); a no-op on CPU."""
    dtype = look_up("amp_dtype", amp_dtype, AMP_DTYPES)
    enabled = amp and torch.device(device).type == "cuda"
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=enabled)


# ---------------------------------------------------------------------------- outputs
def _write_curve(history: pd.DataFrame, path: Path, title: str) -> None:
    """Validation mIoU vs epoch (like the paper's Fig. 4) with the training loss alongside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    evaluated = history.dropna(subset=["val_miou"])
    ax.plot(evaluated["epoch"], evaluated["val_miou"], "o-", color="C0", label="validation mIoU")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation mIoU (threshold 0.5)", color="C0")
    ax.set_ylim(0, 1)
    twin = ax.twinx()
    twin.plot(history["epoch"], history["train_loss"], color="C1", alpha=0.7, label="train loss")
    twin.set_ylabel("training loss (WBCE, then Lovasz hinge)", color="C1")
    lovasz = history.loc[history["loss"] == "lovasz", "epoch"]
    if len(lovasz):
        ax.axvline(lovasz.min() - 0.5, color="grey", ls="--", lw=1)
        ax.text(lovasz.min() - 0.5, 0.02, " Lovasz fine-tuning", color="grey", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path, fsync=False) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------- the loop
class Trainer:
    """One training run of ``method.network`` in named steps: ``__init__`` (setup: data, network,
    optimizer, schedule), :meth:`resume`, then per epoch :meth:`train_epoch`, :meth:`validate`
    and :meth:`save_checkpoint`, and :meth:`finish` (best weights into the method, outputs).
    :meth:`run` drives them; :func:`train_on_splits` is the one-call form.

    Every random draw (batch order, fresh shot noise, augmentation) comes from one
    ``torch.Generator`` seeded with ``settings.seed`` and saved in each checkpoint, so a resumed
    run repeats an uninterrupted one bit for bit.
    """

    def __init__(self, method, train_split, val_split, out_dir, settings: TrainSettings,
                 progress: bool = True, energies_keV=None,
                 train_counts: tuple[np.ndarray, int, int] | None = None):
        self.method, self.settings, self.progress = method, settings, progress
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = settings.device
        self.started = time.perf_counter()
        self.x_train, self.y_train = stack_split(train_split, progress, "loading train split")
        self.x_val, self.y_val = stack_split(val_split, progress, "loading val split") \
            if val_split is not None else (None, None)
        if energies_keV is not None:
            method.energies_keV = np.asarray(energies_keV, dtype=float)
        method.image_shape = tuple(int(n) for n in self.x_train.shape[2:])  # lateral size learnt
        if method.depth != self.y_train.shape[1]:
            raise ValueError(f"labels have depth {self.y_train.shape[1]} but the method's depth is {method.depth}")
        net = method.init_network(self.x_train.shape[1], seed=settings.seed)
        if hasattr(net, "set_statistics"):  # per-energy input normalisation, from the train split only
            net.set_statistics(self.x_train)
        self.net = to_channels_last(net.to(self.device)) if settings.channels_last else net.to(self.device)
        self.run_config = run_config(method, settings, len(self.x_train))
        self.fresh = self._fresh_noise_source(train_counts)
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=settings.epochs)
        on_cuda = torch.device(self.device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and on_cuda
                                           and settings.amp_dtype == "float16")
        self.step_net = torch.compile(net) if settings.compile and on_cuda else net  # same parameters
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.history: list[dict] = []
        self.best = {"epoch": 0, "val_miou": -1.0}
        self.start_epoch = 1
        self.latest_path, self.best_path = self.out_dir / "latest.pt", self.out_dir / "best.pt"

    def _fresh_noise_source(self, train_counts):
        """``(counts, simulated, read)`` to thin every batch from, or None (fixed training images)."""
        if train_counts is None or not self.settings.fresh_noise:
            return None
        counts, simulated, read = train_counts
        if counts.shape != self.x_train.shape:
            raise ValueError(f"train_counts have shape {counts.shape}, the train split {tuple(self.x_train.shape)}")
        if not 0 < read <= simulated:
            raise ValueError(f"cannot thin {simulated} e-/pixel to {read} e-/pixel")
        return None if read == simulated else (np.asarray(counts, np.int64), int(simulated), int(read))

    # -------------------------------------------------------------- checkpoints
    def resume(self) -> None:
        """Continue from ``latest.pt`` (if there): weights, optimizer, schedule, scaler, generator,
        history; a checkpoint made with other settings is refused with the differences."""
        if not self.latest_path.exists():
            return
        ckpt = load_checkpoint(self.latest_path)
        diffs = config_differences(ckpt.get("config", {}), self.run_config)
        if diffs:
            raise ValueError(f"checkpoint {self.latest_path} was made by a different run: " + "; ".join(diffs))
        load_model_state(self.net, ckpt["model"], self.latest_path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"], self.generator)
        self.history, self.best = list(ckpt["history"]), dict(ckpt["best"])
        self.start_epoch = int(ckpt["epoch"]) + 1

    def checkpoint(self, epoch: int) -> dict:
        """Everything needed to resume after ``epoch`` exactly."""
        energies = self.method.energies_keV
        return {
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": epoch, "rng": rng_state(self.generator), "config": self.run_config,
            "history": self.history, "best": self.best, "n_energies": int(self.x_train.shape[1]),
            "energies_keV": None if energies is None else [float(e) for e in energies],
        }

    def save_checkpoint(self, epoch: int, improved: bool) -> None:
        """``latest.pt`` every epoch, ``best.pt`` when ``epoch`` is the best so far; ``history.csv``."""
        state = self.checkpoint(epoch)
        if improved or self.best["epoch"] == epoch:
            save_checkpoint(state, self.best_path)
        save_checkpoint(state, self.latest_path)
        write_text_atomic(self.out_dir / "history.csv", pd.DataFrame(self.history).to_csv(index=False), fsync=False)

    # -------------------------------------------------------------- one epoch
    def batches(self) -> list[torch.Tensor]:
        """This epoch's shuffled sample indices in batches (a last batch of one is merged into
        the one before: BatchNorm needs more than one sample)."""
        n, size = len(self.x_train), self.settings.batch_size
        order = torch.randperm(n, generator=self.generator)
        batches = [order[i : i + size] for i in range(0, n, size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2] = torch.cat(batches[-2:])
            batches.pop()
        return batches

    def batch_inputs(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacks and labels of one batch: a fresh dose draw, random image degradations and a
        random symmetry where enabled (all drawn from the checkpointed generator), on the device."""
        xb, yb = self.x_train[idx], self.y_train[idx]
        if self.fresh is not None:  # a new exact draw at the read dose
            counts, simulated, read = self.fresh
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=self.generator)))
            xb = torch.from_numpy((thin_to_dose(counts[idx.numpy()], simulated, read, rng) / read).astype(np.float32))
        if self.settings.acquisition_augment:  # random image degradations (datasets.realism)
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            xb = torch.from_numpy(augment_image_degradations(xb.numpy(), seed))
        if self.settings.augment:  # the scene's exact symmetries
            xb, yb = symmetry.augment(xb, yb, self.generator)
        if self.settings.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb.to(self.device), yb.to(self.device)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training split (weighted BCE, or the Lovász hinge in the last part);
        the mean training loss. Steps the learning-rate schedule."""
        settings, use_lovasz = self.settings, epoch >= self.settings.lovasz_start()
        self.net.train()
        total_loss, seen, tic = 0.0, 0, time.perf_counter()
        bar = tqdm(self.batches(), desc=f"epoch {epoch}/{settings.epochs}", disable=not self.progress, leave=False)
        for idx in bar:
            xb, yb = self.batch_inputs(idx)
            with _autocast(self.device, settings.amp, settings.amp_dtype):
                logits = self.step_net(xb)
            loss = lovasz_hinge(logits, yb) if use_lovasz else weighted_bce(logits, yb, settings.lam)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", samples_s=f"{seen / (time.perf_counter() - tic):.0f}")
        bar.close()
        self.scheduler.step()
        return total_loss / seen

    def validate(self, epoch: int) -> tuple[float, float]:
        """(validation mIoU, threshold) at the threshold the validation split chooses (the rule the
        benchmark scores with); NaNs on epochs without evaluation or without a validation split."""
        settings = self.settings
        if self.x_val is None or (epoch % settings.eval_every != 0 and epoch != settings.epochs):
            return float("nan"), float("nan")
        val_logits = _predict_logits(self.step_net, self.x_val, self.device, 2 * settings.batch_size,
                                     settings.amp, settings.amp_dtype)
        threshold = choose_threshold(torch.sigmoid(val_logits).numpy(), self.y_val.numpy())
        return mean_iou(val_logits, self.y_val, threshold=threshold), threshold

    # -------------------------------------------------------------- the run
    def run(self, until_epoch: int | None = None, deadline: float | None = None) -> dict:
        """Epochs from where the run stands to ``until_epoch`` (default: all), early stopping on
        ``settings.patience``, a clean stop before ``deadline``; the summary (see :func:`train_on_splits`)."""
        settings = self.settings
        stopped_early = budget_stop = False
        last_epoch = min(until_epoch if until_epoch is not None else settings.epochs, settings.epochs)
        for epoch in range(self.start_epoch, last_epoch + 1):
            if epoch - self.best["epoch"] > settings.patience and self.best["epoch"] > 0:
                stopped_early = True
                break
            tic = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(epoch)
            val_miou, val_threshold = self.validate(epoch)
            self.history.append({
                "epoch": epoch, "train_loss": train_loss, "val_miou": val_miou, "val_threshold": val_threshold,
                "lr": lr, "seconds": time.perf_counter() - tic,
                "loss": "lovasz" if epoch >= settings.lovasz_start() else "wbce",
            })
            if self.progress:
                tqdm.write(f"epoch {epoch}: loss {train_loss:.4f}"
                           + (f", val mIoU {val_miou:.4f}" if np.isfinite(val_miou) else ""))
            improved = bool(np.isfinite(val_miou)) and val_miou > self.best["val_miou"]
            if improved or (self.x_val is None and epoch == settings.epochs):
                self.best = {"epoch": epoch, "val_miou": val_miou}
            self.save_checkpoint(epoch, improved)
            if epoch < settings.epochs and past(deadline, time.perf_counter() - tic):
                budget_stop = True
                break
        finished_epoch = self.history[-1]["epoch"] if self.history else 0
        if budget_stop:
            return {"interrupted_at_epoch": finished_epoch, "epochs": settings.epochs, "reason": "time budget"}
        if until_epoch is not None and finished_epoch < settings.epochs and not stopped_early:
            return {"interrupted_at_epoch": finished_epoch}
        return self.finish(finished_epoch, stopped_early)

    def finish(self, finished_epoch: int, stopped_early: bool) -> dict:
        """Load the best weights (the latest when nothing was evaluated) into the method, save it,
        draw the training curve and write ``summary.json``; the summary."""
        method, settings = self.method, self.settings
        selected = self.best_path if self.best_path.exists() else self.latest_path
        load_model_state(self.net, load_checkpoint(selected)["model"], selected)
        self.net.eval()
        method.fitted = True
        method._trained_dir = self.out_dir.resolve()
        method.save(self.out_dir)
        frame = pd.DataFrame(self.history)
        _write_curve(frame, self.out_dir / "training_curve.png", f"{method.name} {method.params.get('config', '')}".strip())
        seconds = float(frame["seconds"].sum()) if len(frame) else 0.0
        n = len(self.x_train)
        summary = {
            "method": method.name, "params": method.params, "settings": asdict(settings),
            "best_epoch": int(self.best["epoch"]),
            "best_val_miou": None if self.best["val_miou"] < 0 else float(self.best["val_miou"]),
            "epochs_run": int(finished_epoch), "stopped_early": bool(stopped_early),
            "train_seconds": seconds, "wall_seconds": time.perf_counter() - self.started,
            "train_samples_per_s": float(len(frame) * n / seconds) if seconds > 0 else None,
            "n_train": int(n), "n_val": 0 if self.x_val is None else int(len(self.x_val)),
            "energies_keV": None if method.energies_keV is None else [float(e) for e in method.energies_keV],
            **{k: method.describe()[k] for k in ("parameters", "macs")},
        }
        write_text_atomic(self.out_dir / "summary.json", json.dumps(summary, indent=2, default=str), fsync=False)
        return summary


def train_on_splits(method, train_split, val_split, out_dir, settings: TrainSettings,
                    progress: bool = True, resume: bool = False, until_epoch: int | None = None,
                    energies_keV=None, deadline: float | None = None,
                    train_counts: tuple[np.ndarray, int, int] | None = None) -> dict:
    """Train ``method.network`` on ``train_split``, select on ``val_split``; returns the summary.

    ``resume=True`` continues from ``out_dir/latest.pt`` exactly (same batches, learning rates
    and random draws as an uninterrupted run). ``until_epoch`` stops after that epoch as if
    interrupted (the run can be resumed later). ``deadline`` (``time.monotonic()`` seconds): stop
    after the epoch whose successor would end past it, checkpoint saved, returning
    ``{"interrupted_at_epoch": n, "reason": "time budget"}`` (resumable the same way).
    ``train_counts`` = ``(counts (N,E,H,W), simulated e-/px, read e-/px)``: with
    ``settings.fresh_noise`` each batch is a fresh thinning of the stored counts to the read dose
    (``train_split`` then only sets the input statistics). On return the method holds the best weights.
    """
    trainer = Trainer(method, train_split, val_split, out_dir, settings, progress=progress,
                      energies_keV=energies_keV, train_counts=train_counts)
    if resume:
        trainer.resume()
    return trainer.run(until_epoch=until_epoch, deadline=deadline)


def train(method, dataset: Dataset, out_dir, settings: TrainSettings | None = None,
          progress: bool = True, resume: bool = False, deadline: float | None = None) -> dict:
    """Train ``method`` on the dataset's train split, selecting on its val split (both at the
    dataset's read dose; read below the simulated dose and with ``settings.fresh_noise``, every
    epoch draws new training images from the stored counts)."""
    settings = settings or method.train_settings()
    # what the model was trained on, saved in method.json (``reconstruct`` compares a stack's dose
    # with it); file format: the key ``electrons_per_pixel`` is the read dose
    read = dataset.read_electrons_per_pixel
    method.training_data = None if read is None else {"electrons_per_pixel": int(read)}
    if settings.acquisition_augment:
        method.training_data = {**(method.training_data or {}),
                                "augmentation": augmentation_record(settings.acquisition_augment)}
    train_data, val_data = dataset.arrays("train")[:2], dataset.arrays("val")[:2]
    train_counts = None
    if settings.fresh_noise and dataset.thinned:  # simulated above the read dose: fresh draws
        train_counts = (dataset.simulated_counts("train"), dataset.simulated_electrons_per_pixel,
                        dataset.read_electrons_per_pixel)
    return train_on_splits(
        method, train_data, val_data, out_dir, settings,
        progress=progress, resume=resume, energies_keV=dataset.energies_keV, deadline=deadline,
        train_counts=train_counts,
    )
