"""BSE-VoxNets: spatial shift vs a reference loop, Table 2 sizes, ablations, method interface."""

import numpy as np
import pytest
import torch

from methods.base import create
from methods.bsevoxnets import (
    CONFIGS,
    PAPER_SIZES,
    SOPE,
    ConvFFN,
    PlainPatchEmbed,
    S2MLPv2Block,
    build_bsevox,
    mirror_pad,
    shift,
    spatial_shift,
)
from methods.complexity import count_macs, count_parameters, list_network_configs, network_size


def reference_shift(x: np.ndarray, axis: int, step: int) -> np.ndarray:
    """out[i] = x[i - step] along ``axis``, the vacated border keeping its value (plain loop)."""
    out = np.empty_like(x)
    n = x.shape[axis]
    for i in range(n):
        src = min(max(i - step, 0), n - 1)
        dst_index = [slice(None)] * x.ndim
        src_index = [slice(None)] * x.ndim
        dst_index[axis], src_index[axis] = i, src
        out[tuple(dst_index)] = x[tuple(src_index)]
    return out


def reference_spatial_shift(x: np.ndarray, variant: int) -> np.ndarray:
    """Yu et al.'s spatial_shift1/2 on (B, H, W, C) written as loops over four channel groups."""
    c = x.shape[-1]
    bounds = [0, (c + 3) // 4, (c + 3) // 4 + (c + 2) // 4, c - c // 4, c]  # torch.tensor_split
    axes = [(1, 1), (1, -1), (2, 1), (2, -1)] if variant == 1 else [(2, 1), (2, -1), (1, 1), (1, -1)]
    out = np.empty_like(x)
    for g, (axis, step) in enumerate(axes):
        out[..., bounds[g] : bounds[g + 1]] = reference_shift(x[..., bounds[g] : bounds[g + 1]], axis, step)
    return out


@pytest.mark.parametrize("dim,step", [(1, 1), (1, -1), (2, 1), (2, -1)])
def test_shift_matches_reference_loop(dim, step):
    x = torch.randn(2, 5, 6, 3, generator=torch.Generator().manual_seed(dim * 10 + step))
    before = x.clone()
    out = shift(x, dim, step)
    assert torch.equal(x, before), "shift must not modify its input"
    np.testing.assert_array_equal(out.numpy(), reference_shift(x.numpy(), dim, step))


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("channels", [8, 10])
def test_spatial_shift_matches_reference(variant, channels):
    x = torch.randn(2, 4, 5, channels, generator=torch.Generator().manual_seed(channels))
    out = spatial_shift(x, variant)
    np.testing.assert_array_equal(out.numpy(), reference_spatial_shift(x.numpy(), variant))
    # the in-place slice copy bug would smear the first row down the whole axis
    assert not torch.equal(out[:, 2], out[:, 1])


def test_shift_rejects_bad_step():
    with pytest.raises(ValueError, match="step"):
        shift(torch.zeros(1, 3, 3, 4), 1, 2)


def test_mirror_pad_reflects_about_the_edges():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    out = mirror_pad(x, 1, 2, 2, 1)
    assert out.shape == (1, 1, 5, 5)
    assert out[0, 0, 1].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]  # first image row, mirrored columns
    assert torch.equal(out[0, 0, 0], out[0, 0, 1])  # top row mirrored
    assert torch.equal(out[0, 0, 3], out[0, 0, 2]) and torch.equal(out[0, 0, 4], out[0, 0, 1])


@pytest.mark.parametrize("name", ["lite", "small", "medium", "moderate"])
def test_config_sizes_match_table_2(name):
    size = network_size("bsevox", name)  # built on the meta device
    params, macs = size["parameters"], size["macs"]
    paper_params, paper_macs = PAPER_SIZES[name]
    assert abs(params / paper_params - 1) <= 0.10, f"{name}: {params / 1e6:.1f}M parameters"
    assert abs(macs / paper_macs - 1) <= 0.20, f"{name}: {macs / 1e9:.2f} GMACs"


def test_table_2_widths_and_depths():
    table2 = {"lite": (192, 2, 384, 5), "small": (192, 4, 384, 14),
              "medium": (384, 7, 768, 17), "moderate": (384, 10, 768, 17)}
    for name, dims in table2.items():
        cfg = CONFIGS[name]
        assert (cfg.hidden1, cfg.blocks1, cfg.hidden2, cfg.blocks2) == dims
    with torch.device("meta"):
        net = build_bsevox("moderate")
    assert len(net.stage1) == 10 and len(net.stage2) == 17


def test_tiny_forward_shape_and_depth_parameter():
    torch.manual_seed(0)
    net = build_bsevox("tiny", depth=12).eval()
    x = torch.rand(3, 20, 20, 20)
    assert net(x).shape == (3, 12, 20, 20)
    assert net(torch.rand(2, 20, 17, 23)).shape == (2, 12, 17, 23)  # any size up to the canvas
    with pytest.raises(ValueError, match="energies"):
        net(torch.rand(1, 5, 20, 20))
    with pytest.raises(ValueError, match="canvas"):
        net(torch.rand(1, 20, 40, 40))


def test_ablation_switches_change_the_modules():
    full = build_bsevox("tiny")
    assert isinstance(full.embed1, SOPE) and isinstance(full.embed2, SOPE)
    assert all(b.token_mixing for b in full.stage1) and full.upsample[0].ffn.depthwise is not None
    no_sope = build_bsevox("tiny", sope=False)
    assert isinstance(no_sope.embed1, PlainPatchEmbed)
    assert no_sope.embed1.proj.kernel_size == (4, 4) and no_sope.embed2.proj.stride == (2, 2)
    no_s2 = build_bsevox("tiny", s2mlp=False)
    assert all(isinstance(b, S2MLPv2Block) and not b.token_mixing for b in no_s2.stage2)
    ffn = build_bsevox("tiny", convffn=False)
    assert all(isinstance(s.ffn, ConvFFN) and s.ffn.depthwise is None for s in ffn.upsample)
    for net in (no_sope, no_s2, ffn):
        assert count_parameters(net) < count_parameters(full)
        assert net.eval()(torch.rand(1, 20, 20, 20)).shape == (1, 20, 20, 20)


def test_method_describe_and_variant():
    method = create("bsevox", config="lite", convffn=False)
    info = method.describe()
    assert info["variant"] == "no-convffn"
    assert 14e6 < info["parameters"] < 17e6 and info["macs"] > 5e8
    with pytest.raises(KeyError, match="config"):
        create("bsevox", config="huge")


def test_list_network_configs_rows():
    rows = list_network_configs()
    names = {(r["method"], r["config"]) for r in rows}
    assert {("bsevox", c) for c in CONFIGS} | {("unet3d", "small")} <= names
    assert all(r["parameters"] > 0 and r["macs"] > 0 for r in rows)


def test_count_macs_of_known_layers():
    assert count_macs(torch.nn.Linear(10, 5), (3, 10)) == 3 * 10 * 5
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 2, 6, 6)) == 6 * 6 * 4 * 2 * 9
    assert count_parameters(conv) == 4 * 2 * 9
