"""BSE-VoxNets (paper section II.B, Fig. 3, Tables 1-2): multi-energy BSE images -> Cu volume.

Three modules, all configured through constructor arguments:

1. 2D feature extractor: SOPE (patch 4) + N1 S2-MLPv2 blocks, SOPE (patch 2) + N2 blocks.
2. Reduced upsampling: three (bilinear x2 upsampling + 3x3 conv, ConvFFN) stages.
3. 2D-to-3D head: a 2D conv whose output channels become depth, reshaped to a volume, then a
   3D conv; the output is a logit per voxel of the Si block, shape (B, D, H, W).

Image size: the 20x20 input is padded to 32x32 by mirroring about the cell edges (the simulator
uses reflective side walls, so the mirror image is the physical continuation), the network works on
powers of two (32 -> 8 -> 4 tokens per side -> 32), and the centre 20x20 is cropped before the head.
Any H, W <= ``canvas`` works the same way.

Free design constants (not given in the paper), chosen so that the configs land on Table 2's
parameter counts and compute: channel-MLP ratio 3 in the S2-MLPv2 blocks, upsampling widths
(hidden2, hidden2/2, hidden2/4), ConvFFN expansion 4, head with 8 feature channels per depth layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from datasets.errors import look_up
from methods.base import HyperParam
from methods.network import NetworkMethod


@dataclass(frozen=True)
class BseVoxConfig:
    """Widths and depths of one BSE-VoxNets configuration (Table 2 plus the free constants)."""

    hidden1: int = 192  # 1st SOPE (patch 4) embedding width
    blocks1: int = 2  # N1
    hidden2: int = 384  # 2nd SOPE (patch 2) embedding width
    blocks2: int = 5  # N2
    mlp_ratio: float = 3.0  # channel-MLP expansion in the S2-MLPv2 blocks
    up_widths: tuple[int, int, int] | None = None  # default (hidden2, hidden2/2, hidden2/4)
    ffn_ratio: int = 4  # ConvFFN expansion
    head_features: int = 8  # feature channels per depth layer in the 2D->3D head
    canvas: int = 32  # padded image size (a multiple of 8)

    def widths(self) -> tuple[int, int, int]:
        if self.up_widths is not None:
            return tuple(self.up_widths)
        return (self.hidden2, self.hidden2 // 2, self.hidden2 // 4)


#: Table 2 configurations and a CPU-sized ``tiny`` one (not in the paper).
CONFIGS: dict[str, BseVoxConfig] = {
    "tiny": BseVoxConfig(hidden1=32, blocks1=1, hidden2=64, blocks2=2, head_features=4),
    # the scaling study's sizes (benchmark/scaling_study.py): lite's layout (N1 = 2, hidden2 =
    # 2 x hidden1) at 0.29x and 0.58x its widths and N2 = 4; 1.24 M and 4.83 M parameters, within
    # 5 % of the U-Net's small and s5m
    "s1m": BseVoxConfig(hidden1=56, blocks1=2, hidden2=112, blocks2=4),
    "s5m": BseVoxConfig(hidden1=112, blocks1=2, hidden2=224, blocks2=4),
    "lite": BseVoxConfig(hidden1=192, blocks1=2, hidden2=384, blocks2=5),
    "small": BseVoxConfig(hidden1=192, blocks1=4, hidden2=384, blocks2=14),
    "medium": BseVoxConfig(hidden1=384, blocks1=7, hidden2=768, blocks2=17),
    "moderate": BseVoxConfig(hidden1=384, blocks1=10, hidden2=768, blocks2=17),
}

#: Table 2's reported totals, for checks and reports: parameters, GMACs per sample.
PAPER_SIZES = {
    "lite": (16e6, 1.1e9),
    "small": (36e6, 1.2e9),
    "medium": (173e6, 5.0e9),
    "moderate": (179e6, 5.1e9),
}


# ---------------------------------------------------------------------------- building blocks
class Affine(nn.Module):
    """Learnable per-channel ``alpha * x + beta`` (DHVT's affine layer), on (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x * self.alpha + self.beta


class SOPE(nn.Module):
    """Sequential overlapping patch embedding (Lu et al., NeurIPS 2022, DHVT).

    Affine -> log2(patch) x [3x3 stride-2 conv, BatchNorm, GELU] -> Affine. Patch 4 = two
    convs (the first to half width), patch 2 = one conv.
    """

    def __init__(self, in_channels: int, out_channels: int, patch: int):
        super().__init__()
        steps = {2: 1, 4: 2, 8: 3}.get(patch)
        if steps is None:
            raise ValueError(f"SOPE patch must be 2, 4 or 8, got {patch}")
        widths = [in_channels] + [out_channels // 2 ** (steps - 1 - i) for i in range(steps)]
        layers = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.GELU(),
            ]
        self.pre_affine = Affine(in_channels)
        self.proj = nn.Sequential(*layers)
        self.post_affine = Affine(out_channels)

    def forward(self, x):
        return self.post_affine(self.proj(self.pre_affine(x)))


class PlainPatchEmbed(nn.Module):
    """Non-overlapping patch embedding (ViT): one conv with kernel = stride = patch (ablation)."""

    def __init__(self, in_channels: int, out_channels: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, patch, stride=patch)

    def forward(self, x):
        return self.proj(x)


def shift(x: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Shift ``x`` by one position along ``dim`` (step +1 or -1), out of place.

    ``out[i] = x[i - step]``; the vacated border keeps its own value (as in S2-MLP's slice copy
    ``x[1:] = x[:-1]``, which leaves ``x[0]`` untouched). Built with ``torch.cat`` into a new tensor:
    an in-place slice copy overlaps source and destination and gives wrong results.
    """
    n = x.shape[dim]
    if step == 1:
        return torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    if step == -1:
        return torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    raise ValueError(f"step must be +1 or -1, got {step}")


def spatial_shift(x: torch.Tensor, variant: int) -> torch.Tensor:
    """S2-MLPv2 spatial shift of four channel groups in four directions, on (B, H, W, C).

    Variant 1 shifts the groups by (+1 along H, -1 along H, +1 along W, -1 along W); variant 2
    uses the transposed pattern (+W, -W, +H, -H), as ``spatial_shift1/2`` of Yu et al. (2021).
    """
    h_dim, w_dim = 1, 2
    first, second = (h_dim, w_dim) if variant == 1 else (w_dim, h_dim)
    groups = torch.tensor_split(x, 4, dim=-1)
    moved = (
        shift(groups[0], first, 1),
        shift(groups[1], first, -1),
        shift(groups[2], second, 1),
        shift(groups[3], second, -1),
    )
    return torch.cat(moved, dim=-1)


class SplitAttention(nn.Module):
    """Split attention over K feature maps (Yu et al. 2021): softmax weights per channel and map."""

    def __init__(self, channels: int, k: int = 3):
        super().__init__()
        self.k = k
        self.mlp1 = nn.Linear(channels, channels, bias=False)
        self.mlp2 = nn.Linear(channels, channels * k, bias=False)

    def forward(self, maps):  # (B, K, H, W, C)
        b, k, h, w, c = maps.shape
        pooled = maps.mean(dim=(1, 2, 3))  # (B, C); the paper sums, the mean is better scaled
        weights = self.mlp2(F.gelu(self.mlp1(pooled))).reshape(b, k, 1, 1, c).softmax(dim=1)
        return (weights * maps).sum(dim=1)


class S2Attention(nn.Module):
    """Spatial-shift token mixing: Linear(C->3C), shift two branches, split attention, Linear."""

    def __init__(self, channels: int):
        super().__init__()
        self.expand = nn.Linear(channels, 3 * channels)
        self.split_attention = SplitAttention(channels, 3)
        self.project = nn.Linear(channels, channels)

    def forward(self, x):  # (B, H, W, C)
        a, b, c = self.expand(x).chunk(3, dim=-1)
        maps = torch.stack([spatial_shift(a, 1), spatial_shift(b, 2), c], dim=1)
        return self.project(self.split_attention(maps))


class ChannelMLP(nn.Sequential):
    def __init__(self, channels: int, ratio: float):
        hidden = int(channels * ratio)
        super().__init__(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))


class S2MLPv2Block(nn.Module):
    """Pre-norm residual block: x + S2Attention(LN(x)), then x + MLP(LN(x)); on (B, H, W, C).

    ``token_mixing=False`` drops the spatial-shift sublayer (Table 1's "without S2-MLPv2"
    ablation): the block is then a plain pre-norm residual channel MLP.
    """

    def __init__(self, channels: int, mlp_ratio: float, token_mixing: bool = True):
        super().__init__()
        self.token_mixing = token_mixing
        if token_mixing:
            self.norm1 = nn.LayerNorm(channels)
            self.attn = S2Attention(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = ChannelMLP(channels, mlp_ratio)

    def forward(self, x):
        if self.token_mixing:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvFFN(nn.Module):
    """Residual convolutional feed-forward: 1x1 conv, depthwise 3x3 conv (+identity), 1x1 conv.

    Each conv is followed by BatchNorm (and GELU except the last); ``depthwise=False`` gives the
    plain FFN of Table 1's ablation (1x1 convs only). The whole FFN is residual: x + FFN(x).
    """

    def __init__(self, channels: int, ratio: int, depthwise: bool = True):
        super().__init__()
        hidden = channels * ratio
        self.expand = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.GELU()
        )
        self.depthwise = (
            nn.Sequential(
                nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden),
                nn.GELU(),
            )
            if depthwise
            else None
        )
        self.project = nn.Sequential(
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x):
        h = self.expand(x)
        if self.depthwise is not None:
            h = h + self.depthwise(h)
        return x + self.project(h)


class UpStage(nn.Module):
    """x2 bilinear upsampling + 3x3 conv (BatchNorm, GELU) to ``out_channels``, then ConvFFN."""

    def __init__(self, in_channels: int, out_channels: int, ffn_ratio: int, depthwise: bool):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.GELU(),
        )
        self.ffn = ConvFFN(out_channels, ffn_ratio, depthwise)

    def forward(self, x):
        return self.ffn(self.up(x))


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pad (B, C, H, W) by mirroring about the image edges (edge pixels repeated)."""
    if max(top, bottom) > x.shape[-2] or max(left, right) > x.shape[-1]:
        raise ValueError(f"cannot mirror-pad an image of size {tuple(x.shape[-2:])} that much")
    rows = [x[..., :top, :].flip(-2), x, x[..., x.shape[-2] - bottom :, :].flip(-2)]
    x = torch.cat(rows, dim=-2)
    cols = [x[..., :left].flip(-1), x, x[..., x.shape[-1] - right :].flip(-1)]
    return torch.cat(cols, dim=-1)


# ---------------------------------------------------------------------------- the network
class BseVoxNet(nn.Module):
    """BSE-VoxNets: (B, E, H, W) multi-energy BSE images -> (B, D, H, W) voxel logits."""

    def __init__(
        self,
        n_energies: int = 20,
        depth: int = 20,
        config: BseVoxConfig | None = None,
        sope: bool = True,
        s2mlp: bool = True,
        convffn: bool = True,
    ):
        super().__init__()
        cfg = config or CONFIGS["lite"]
        if cfg.canvas % 8:
            raise ValueError(f"canvas must be a multiple of 8, got {cfg.canvas}")
        self.config, self.depth, self.n_energies = cfg, depth, n_energies
        embed = SOPE if sope else PlainPatchEmbed
        self.embed1 = embed(n_energies, cfg.hidden1, 4)
        self.stage1 = nn.Sequential(
            *[S2MLPv2Block(cfg.hidden1, cfg.mlp_ratio, s2mlp) for _ in range(cfg.blocks1)]
        )
        self.embed2 = embed(cfg.hidden1, cfg.hidden2, 2)
        self.stage2 = nn.Sequential(
            *[S2MLPv2Block(cfg.hidden2, cfg.mlp_ratio, s2mlp) for _ in range(cfg.blocks2)]
        )
        w1, w2, w3 = cfg.widths()
        self.upsample = nn.Sequential(
            UpStage(cfg.hidden2, w1, cfg.ffn_ratio, convffn),
            UpStage(w1, w2, cfg.ffn_ratio, convffn),
            UpStage(w2, w3, cfg.ffn_ratio, convffn),
        )
        self.head2d = nn.Conv2d(w3, depth * cfg.head_features, 3, padding=1)
        self.head3d = nn.Conv3d(cfg.head_features, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, e, h, w = x.shape
        size = self.config.canvas
        if e != self.n_energies:
            raise ValueError(f"network built for {self.n_energies} energies, got {e}")
        if h > size or w > size:
            raise ValueError(f"image {h}x{w} larger than the network canvas {size}x{size}")
        top, left = (size - h) // 2, (size - w) // 2
        x = mirror_pad(x, top, size - h - top, left, size - w - left)
        x = self.embed1(x).permute(0, 2, 3, 1)  # (B, H/4, W/4, C1) channels last
        x = self.stage1(x).permute(0, 3, 1, 2)
        x = self.embed2(x).permute(0, 2, 3, 1)  # (B, H/8, W/8, C2)
        x = self.stage2(x).permute(0, 3, 1, 2)
        x = self.upsample(x)[..., top : top + h, left : left + w]
        x = self.head2d(x).reshape(b, self.config.head_features, self.depth, h, w)
        return self.head3d(x)[:, 0]


def build_bsevox(
    config: str | BseVoxConfig = "lite",
    n_energies: int = 20,
    depth: int = 20,
    sope: bool = True,
    s2mlp: bool = True,
    convffn: bool = True,
    **overrides,
) -> BseVoxNet:
    """Build a BSE-VoxNets network from a config name (``CONFIGS``) and optional overrides."""
    if isinstance(config, str):
        config = look_up("BSE-VoxNets config", config, CONFIGS)
    if overrides:
        config = replace(config, **overrides)
    return BseVoxNet(n_energies, depth, config, sope=sope, s2mlp=s2mlp, convffn=convffn)


# ---------------------------------------------------------------------------- the method
class BseVoxNets(NetworkMethod):
    """BSE-VoxNets behind the shared method interface (trained by ``methods.training``)."""

    name = "bsevox"
    label = "BSE-VoxNets"
    #: paper Table 1: one module switched off per variant
    variants = {
        "full": {},
        "no-sope": {"sope": False},
        "no-s2mlp": {"s2mlp": False},
        "no-convffn": {"convffn": False},
    }
    hyperparams = {
        "config": HyperParam("lite", True, "tiny | lite | small | medium | moderate (Table 2)"),
        "sope": HyperParam(True, True, "SOPE patch embedding (False: plain patch embedding)"),
        "s2mlp": HyperParam(True, True, "S2-MLPv2 token mixing (False: channel-MLP-only blocks)"),
        "convffn": HyperParam(True, True, "ConvFFN in the upsampling stages (False: plain FFN)"),
        "normalise_inputs": HyperParam(True, True, "standardise each energy with the train split's mean/std"),
        **NetworkMethod.training_hyperparams,
    }

    def __init__(self, device: str = "cpu", **params):
        super().__init__(device=device, **params)
        look_up("BSE-VoxNets config", self.params["config"], CONFIGS)

    def build_network(self, n_energies: int) -> nn.Module:
        return build_bsevox(
            self.params["config"],
            n_energies=n_energies,
            depth=self.depth,
            sope=bool(self.params["sope"]),
            s2mlp=bool(self.params["s2mlp"]),
            convffn=bool(self.params["convffn"]),
        )

    @classmethod
    def configs(cls) -> list[str]:
        return list(CONFIGS)

    def variant(self) -> str:
        """'full' or the ablation name of ``variants`` ('no-sope', ...; '+'-joined), for result rows."""
        off = [name for name, overrides in {**self.variants, **self.training_variants}.items()
               if overrides and all(self.params[k] == v for k, v in overrides.items())]
        return "+".join(off) or "full"

    def architecture(self) -> dict:
        return {**asdict(CONFIGS[self.params["config"]]),
                **{k: bool(self.params[k]) for k in ("sope", "s2mlp", "convffn")}}

    def describe(self) -> dict:
        info = super().describe()
        info["variant"] = self.variant()
        info["architecture"] = asdict(CONFIGS[self.params["config"]])
        return info
