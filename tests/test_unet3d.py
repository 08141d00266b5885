"""MONAI 3D U-Net method: energy-as-depth layout, padding/cropping, configs, interface."""

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from methods.base import create
from methods.toys import ToySplit
from methods.unet3d import CONFIGS, EnergyDepthUNet


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_output_shape_for_sizes_the_strides_do_not_divide(name):
    torch.manual_seed(0)
    net = EnergyDepthUNet(depth=20, config=CONFIGS[name]).eval()
    assert isinstance(net.unet, UNet)
    assert net(torch.rand(2, 20, 20, 20)).shape == (2, 20, 20, 20)
    assert net(torch.rand(1, 20, 13, 17)).shape == (1, 20, 13, 17)


def test_energy_axis_resampled_to_depth():
    net = EnergyDepthUNet(depth=12, config=CONFIGS["tiny"]).eval()
    assert net(torch.rand(1, 20, 20, 20)).shape == (1, 12, 20, 20)
    assert net(torch.rand(1, 7, 20, 20)).shape == (1, 12, 20, 20)


def test_configs_grow_and_describe_reports_size():
    sizes = [create("unet3d", config=name).describe() for name in ("tiny", "small", "base")]
    params = [s["parameters"] for s in sizes]
    assert params == sorted(params) and params[0] > 0
    assert all(s["macs"] > 0 for s in sizes)
    assert sizes[1]["architecture"]["strides"] == (1, 2, 2)  # a full-resolution first level


def test_full_resolution_features_and_mirror_padding():
    """The first block of MONAI's UNet runs at stride 1 (full resolution); odd lateral sizes are
    mirror-padded and cropped back to the input size."""
    torch.manual_seed(0)
    net = EnergyDepthUNet(depth=20, config=CONFIGS["tiny"]).eval()
    assert net.unet.model[0].conv.unit0.conv.stride == (1, 1, 1)
    assert net(torch.rand(2, 20, 19, 21)).shape == (2, 20, 19, 21)
    with pytest.raises(KeyError, match="unknown U-Net config"):
        create("unet3d", config="huge")


def test_fit_and_reconstruct_with_smoke_preset(tmp_path):
    data = ToySplit(6, seed=5)
    method = create("unet3d", config="tiny", preset="smoke")
    with pytest.raises(RuntimeError, match="needs training"):
        method.reconstruct(data.bse[:1])
    method.fit(data, data, out_dir=tmp_path, progress=False)
    prob = method.reconstruct(data.bse[:3], data.energies_keV)
    assert prob.shape == (3, 20, 20, 20) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_a_unet_config_matches_the_tiny_bsevoxnets_parameter_count():
    unet = create("unet3d", config="matched").describe()["parameters"]
    bsevox = create("bsevox", config="tiny").describe()["parameters"]
    assert abs(unet - bsevox) / bsevox < 0.10  # within 10 %: a like-for-like comparison
