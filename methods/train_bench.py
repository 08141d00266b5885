"""Training throughput of the learned networks, side by side in one run:
``python -m methods train-bench [--configs bsevox:tiny,unet3d:matched] [--variants ...]``.

For each network and each *variant* of the training step (eager fp32 at the preset's batch size,
a larger batch, channels-last memory, ``torch.compile``, bf16 autocast where the CPU has bf16
instructions), the same number of optimizer steps (forward, weighted BCE, backward, AdamW) on
random data of the paper's shape is timed. The variants are interleaved in rounds (round r runs
every variant once) so that a machine whose load changes during the run slows them alike: quote
the *ratios* to ``eager``, not the absolute figures, when the machine is shared.

FLOP utilisation: a training step costs about 3 forward passes (backward = 2 forward), i.e.
``6 * MACs`` FLOPs per sample; it is divided by the machine's measured fp32 matmul throughput
(``torch.mm`` of 1024 x 1024 matrices on the same threads), the best a dense kernel can do here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from datasets.errors import unknown_name
from methods.base import create
from methods.losses import weighted_bce
from methods.training import to_channels_last

VARIANTS = ("eager", "batch-x2", "channels-last", "compile", "bf16")
DEFAULT_CONFIGS = (("bsevox", "tiny"), ("unet3d", "matched"))


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 instructions (AVX512-BF16 or AMX); without them bf16
    autocast on CPU is emulated and slower than fp32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Measured fp32 ``torch.mm`` throughput (GFLOP/s) on the current torch threads."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    tic = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - tic) / 1e9


@dataclass
class StepCase:
    """One (network, variant): a ready training step on fixed random data."""

    method: str
    config: str
    variant: str
    batch_size: int
    macs_per_sample: float
    step: object  # callable running one optimizer step
    seconds: list

    def run(self, steps: int) -> None:
        tic = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.seconds.append((time.perf_counter() - tic) / steps)


def make_case(method_name: str, config: str, variant: str, batch_size: int, seed: int = 0) -> StepCase:
    """Build one network's training step under ``variant`` (see :data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise unknown_name("variant", variant, VARIANTS)
    method = create(method_name, config=config)
    net = method.init_network(20, seed=seed)
    size = method.describe()
    batch = batch_size * (2 if variant == "batch-x2" else 1)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 20, 20, 20, generator=gen)
    y = (torch.rand(batch, 20, 20, 20, generator=gen) > 0.9).float()
    if variant == "channels-last":  # 2D weights channels-last, 3D weights channels-last-3d
        to_channels_last(net)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(net) if variant == "compile" else net
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16"):
            logits = forward(x)
        loss = weighted_bce(logits.float(), y, 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return StepCase(method_name, config, variant, batch, float(size["macs"]), step, [])


def train_bench(configs=DEFAULT_CONFIGS, variants=VARIANTS, batch_size: int = 32, steps: int = 3,
                rounds: int = 3, progress=print) -> list[dict]:
    """Samples/s of every (network, variant), interleaved over ``rounds``; one row each with the
    median, the ratio to ``eager`` and the FLOP utilisation against :func:`matmul_gflops`."""
    variants = [v for v in variants if v != "bf16" or cpu_has_bf16()]
    cases = []
    for method_name, config in configs:
        for variant in variants:
            case = make_case(method_name, config, variant, batch_size)
            case.step()  # warm-up (and compilation)
            cases.append(case)
    peak = matmul_gflops()
    for r in range(rounds):
        for case in cases:
            case.run(steps)
        progress(f"round {r + 1}/{rounds} done")
    rows = []
    for case in cases:
        seconds = float(np.median(case.seconds))
        rate = case.batch_size / seconds
        rows.append({"method": case.method, "config": case.config, "variant": case.variant,
                     "batch_size": case.batch_size, "samples_per_s": rate,
                     "train_gflops": 6 * case.macs_per_sample * rate / 1e9,
                     "matmul_gflops": peak, "torch_threads": torch.get_num_threads()})
    eager = {(r["method"], r["config"]): r["samples_per_s"] for r in rows if r["variant"] == "eager"}
    for row in rows:  # without an eager variant in the run there is no ratio to it
        row["ratio_to_eager"] = row["samples_per_s"] / eager.get((row["method"], row["config"]), float("nan"))
        row["utilisation"] = row["train_gflops"] / peak
    return rows


def _ratio(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: no eager row to compare with


def format_rows(rows: list[dict]) -> str:
    lines = [f"training throughput, torch threads {rows[0]['torch_threads']}, measured fp32 matmul "
             f"{rows[0]['matmul_gflops']:.1f} GFLOP/s" if rows else "no rows",
             f"{'network':18s} {'variant':14s} {'batch':>5s} {'samples/s':>10s} {'x eager':>8s} "
             f"{'GFLOP/s':>8s} {'of matmul':>9s}"]
    for r in rows:
        lines.append(f"{r['method'] + ' ' + r['config']:18s} {r['variant']:14s} {r['batch_size']:5d} "
                     f"{r['samples_per_s']:10.1f} {_ratio(r['ratio_to_eager']):>8s} {r['train_gflops']:8.2f} "
                     f"{100 * r['utilisation']:8.1f}%")
    return "\n".join(lines)
