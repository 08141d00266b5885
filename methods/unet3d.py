"""3D U-Net baseline (paper section III, ref. [25]): MONAI's ``UNet`` on the BSE stack as a volume.

Input layout: the energy axis is used as the depth axis, i.e. the (E, H, W) stack enters as a
one-channel volume (1, E, H, W). The beam penetrates deeper as its energy rises, so the energy
axis is a (monotonic, blurred) proxy for depth and the U-Net's local 3D convolutions can map
"signal change between neighbouring energies" to "Cu at the matching depth". The alternative,
20 energy channels over a volume, would have to be broadcast along a depth axis on which the
input is constant, leaving the convolutions nothing but the zero padding to tell depths apart.
When E != D the stack is resampled (trilinear) along the energy axis to D layers.

The volume is mirror-padded (the scene's side walls are mirrors), split between both sides, to a
multiple of the product of the strides and the output cropped back, so any H, W, D work. The
first stride is 1, so the top level of the U-Net keeps the full resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from datasets.errors import look_up
from methods.base import HyperParam
from methods.network import NetworkMethod


@dataclass(frozen=True)
class UNetConfig:
    """Constructor arguments of ``monai.networks.nets.UNet`` for one size."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    num_res_units: int


#: version of the layout around MONAI's UNet (saved with every model: a change retrains)
ARCHITECTURE_LAYOUT = "energy-as-depth, reflect padding, full-resolution first level (2)"

CONFIGS: dict[str, UNetConfig] = {
    # the first stride is 1: the top level keeps the full 20 x 20 x 20 resolution (MONAI's UNet
    # applies strides[0] to its first block, so a 2 there would leave no full-resolution features)
    "tiny": UNetConfig(channels=(8, 16, 32), strides=(1, 2), num_res_units=1),
    # parameter count matched to BSE-VoxNets tiny (0.30 M vs 0.28 M): the like-for-like CPU comparison
    "matched": UNetConfig(channels=(8, 16, 32, 64), strides=(1, 2, 2), num_res_units=2),
    "small": UNetConfig(channels=(16, 32, 64, 128), strides=(1, 2, 2), num_res_units=2),
    # the scaling study's 5 M size (benchmark/scaling_study.py), matched to BSE-VoxNets s5m: 4.74 M
    # parameters (its 1.2 M size is ``small``, 1.19 M, matched to BSE-VoxNets s1m)
    "s5m": UNetConfig(channels=(32, 64, 128, 256), strides=(1, 2, 2), num_res_units=2),
    "base": UNetConfig(channels=(32, 64, 128, 256, 512), strides=(1, 2, 2, 2), num_res_units=2),
}


class EnergyDepthUNet(nn.Module):
    """(B, E, H, W) BSE stack -> (B, D, H, W) logits with a MONAI 3D U-Net, energy as depth."""

    def __init__(self, depth: int = 20, config: UNetConfig | None = None):
        super().__init__()
        cfg = config or CONFIGS["small"]
        self.depth = depth
        self.multiple = math.prod(cfg.strides)
        self.unet = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            channels=cfg.channels,
            strides=cfg.strides,
            num_res_units=cfg.num_res_units,
            norm="batch",  # instance norm would remove the absolute BSE level, which carries Cu signal
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, e, h, w = x.shape
        volume = x[:, None]  # (B, 1, E, H, W): energy axis as depth
        if e != self.depth:
            volume = F.interpolate(volume, size=(self.depth, h, w), mode="trilinear", align_corners=True)
        pads = [(-n) % self.multiple for n in (self.depth, h, w)]
        # mirror padding (the side walls are mirrors); split between both sides, cropped back
        lo = [p // 2 for p in pads]
        volume = F.pad(volume, (lo[2], pads[2] - lo[2], lo[1], pads[1] - lo[1], lo[0], pads[0] - lo[0]),
                       mode="reflect")
        out = self.unet(volume)[:, 0]
        return out[:, lo[0] : lo[0] + self.depth, lo[1] : lo[1] + h, lo[2] : lo[2] + w]


class UNet3D(NetworkMethod):
    """MONAI 3D U-Net behind the shared method interface (trained by ``methods.training``)."""

    name = "unet3d"
    label = "3D U-Net"
    hyperparams = {
        "config": HyperParam("small", True, "tiny | matched (BSE-VoxNets tiny's parameter count) | small | base (MONAI UNet channels/strides)"),
        # off by default: on the quick validation split the U-Net reached mIoU 0.628 with it against
        # 0.713 without (the energy axis is its depth axis; per-slice rescaling hurts it)
        "normalise_inputs": HyperParam(False, True, "standardise each energy with the train split's mean/std"),
        **NetworkMethod.training_hyperparams,
    }

    def __init__(self, device: str = "cpu", **params):
        super().__init__(device=device, **params)
        look_up("U-Net config", self.params["config"], CONFIGS)

    @classmethod
    def configs(cls) -> list[str]:
        return list(CONFIGS)

    def build_network(self, n_energies: int) -> nn.Module:
        return EnergyDepthUNet(self.depth, CONFIGS[self.params["config"]])

    def architecture(self) -> dict:
        return {**asdict(CONFIGS[self.params["config"]]), "layout": ARCHITECTURE_LAYOUT}

    def describe(self) -> dict:
        info = super().describe()
        info["architecture"] = self.architecture()
        return info
