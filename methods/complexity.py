"""Network size figures: parameter count and multiply-accumulates (MACs) per sample.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions,
FLOPs / 2) on the meta device, so even the 180M-parameter configs are counted without
allocating their weights. Element-wise operations (norms, activations) are not counted, as is
usual for the FLOPs figures quoted in papers such as Table 2.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of one forward pass on an input of ``input_shape`` (batch included).

    Runs on the meta device when the model lives there (no memory, no compute); divide by the
    batch size for a per-sample figure.
    """
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = torch.zeros(tuple(input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


@functools.cache
def network_size(method_name: str, config: str, n_energies: int = 20, size: int = 20,
                 depth: int = 20) -> dict:
    """Parameters and MACs per sample of a registered network config, built on the meta device.

    Cached: the figures depend only on the arguments.
    """
    from methods.base import create

    method = create(method_name, config=config, depth=depth)
    with torch.device("meta"):
        net = method.build_network(n_energies)
    return {
        "method": method_name,
        "config": config,
        "parameters": count_parameters(net),
        "macs": count_macs(net, (1, n_energies, size, size)),
    }


def list_network_configs() -> list[dict]:
    """One row per network config of every registered method that declares configs: method,
    config, parameters, macs (20 energies, 20x20 input)."""
    from methods.base import available, get

    return [dict(network_size(name, config)) for name in available() for config in get(name).configs()]
