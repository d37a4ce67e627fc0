"""LocalNet, GlobalNet, CompositeNet: shapes, initial state, and that training moves the right way."""

import numpy as np
import pytest
import torch
from LabelRegLib.core.spatial import initial_alignment, resample_volume, warp
from LabelRegLib.nets.losses import multi_scale_loss
from LabelRegLib.nets.networks import CompositeNet, GlobalNet, LocalNet, build_network


@pytest.mark.parametrize("network_type", ["local", "global", "composite"])
def test_output_shape_equals_fixed_shape_for_odd_sizes(network_type):
    net = build_network(network_type, num_channel_initial=4, norm="batch").eval()
    moving = torch.rand(1, 1, 64, 69, 69)  # the example data's MR (k, j, i)
    fixed = torch.rand(1, 1, 44, 63, 47)  # and its TRUS
    with torch.no_grad():
        ddf = net(moving, fixed)
    assert ddf.shape == (1, 3, 44, 63, 47)
    assert ddf.dtype == torch.float32


def test_an_input_smaller_than_the_training_size_is_zero_padded_to_it_centred():
    torch.manual_seed(0)
    net = LocalNet(num_channel_initial=4, norm="instance").eval()
    with torch.no_grad():  # a trained-like network: the output layers start at zero
        for parameter in net.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    moving, fixed = torch.rand(1, 1, 19, 21, 17), torch.rand(1, 1, 19, 21, 17)
    net.min_input_shape = (23, 38, 17)  # pads 2 + 2, 8 + 9 and 0 + 0 voxels, then to 32 x 48 x 32
    with torch.no_grad():
        ddf = net(moving, fixed)
        net.min_input_shape = None
        padded = net(*(torch.nn.functional.pad(x, (0, 0, 8, 9, 2, 2)) for x in (moving, fixed)))
    assert ddf.shape == (1, 3, 19, 21, 17)
    torch.testing.assert_close(ddf, padded[:, :, 2:21, 8:29])


def test_localnet_and_globalnet_start_at_the_identity():
    moving, fixed = torch.rand(2, 1, 21, 19, 23), torch.rand(2, 1, 21, 19, 23)
    for net in (
        LocalNet(num_channel_initial=4),
        GlobalNet(num_channel_initial=4),
        CompositeNet(num_channel_initial=4, num_channel_initial_global=4),
    ):
        with torch.no_grad():
            ddf = net.train()(moving, fixed)
        assert torch.count_nonzero(ddf) == 0 if isinstance(net, LocalNet) else float(ddf.abs().max()) < 1e-5


def test_one_adam_step_moves_the_globalnet_affine_a_little_not_into_a_mirror():
    """Adam moves each of the head's thousands of weights by ~lr at once: the output must be scaled for that."""
    torch.manual_seed(0)
    net = GlobalNet(num_channel_initial=8, norm="instance")
    x = torch.rand(2, 2, 32, 32, 32)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.predict_affine(x).sum().backward()  # any loss: the first Adam step has size lr in every weight
    optimizer.step()
    with torch.no_grad():
        theta = net.predict_affine(x)
    change = theta - torch.eye(3, 4)
    assert float(change[:, :, :3].abs().max()) < 0.05 and float(change[:, :, 3].abs().max()) < 0.5  # voxels
    assert bool((torch.linalg.det(theta[:, :, :3]) > 0.8).all())


def test_ddf_levels_and_channels_follow_the_original():
    net = LocalNet(num_channel_initial=8, ddf_levels=[2, 3, 4])
    assert sorted(net.summands.keys()) == ["2", "3", "4"]
    assert sorted(net.up.keys()) == ["2", "3"]  # no up-sampling below the finest DDF level
    assert net.encoder.channels == [8, 16, 32, 64, 128]
    assert net.encoder.down[0].conv0.conv.kernel_size == (7, 7, 7)
    with pytest.raises(ValueError, match="ddf_levels"):
        LocalNet(ddf_levels=[5])


def test_one_adam_step_lowers_the_multiscale_dice_loss(phantom):
    fixed = phantom.fixed_image
    start = initial_alignment(phantom.moving_image, fixed, "centers")

    def on_fixed_grid(volume):
        return torch.as_tensor(resample_volume(volume, fixed.shape, fixed.ijk_to_ras, start).array)[None, None]

    moving_image = on_fixed_grid(phantom.moving_image) / 255
    fixed_image = torch.as_tensor(fixed.array)[None, None] / 255
    moving_label = on_fixed_grid(phantom.moving_labels[0])
    fixed_label = torch.as_tensor(phantom.fixed_labels[0].array)[None, None]

    torch.manual_seed(0)
    net = LocalNet(num_channel_initial=4, norm="instance")
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-5)

    def loss():
        return multi_scale_loss(fixed_label, warp(moving_label, net(moving_image, fixed_image)), "dice")

    before = loss()
    optimiser.zero_grad()
    before.backward()
    optimiser.step()
    with torch.no_grad():
        after = loss()
    assert float(after) < float(before.detach())
    assert np.isfinite(float(after))


def test_the_mirrored_average_is_exactly_equivariant():
    """Test-time augmentation along j: the mirrored pair gets the mirrored field (flipped, its j component negated);
    without axes it is the network's own field."""
    from LabelRegLib.registration.network_field import mirrored_prediction

    network = LocalNet(4, norm="instance").eval()
    with torch.no_grad():
        for parameter in network.parameters():  # away from the identity start, so that the field is not zero
            parameter.add_(0.05 * torch.randn_like(parameter))
        moving, fixed = torch.rand(1, 1, 16, 20, 18), torch.rand(1, 1, 16, 20, 18)
        assert torch.equal(mirrored_prediction(network, moving, fixed), network(moving, fixed))
        field = mirrored_prediction(network, moving, fixed, "j")
        of_mirrored = mirrored_prediction(network, moving.flip(3), fixed.flip(3), "j")
    expected = field.flip(3) * torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1, 1)
    assert field.abs().max() > 1e-3
    assert torch.allclose(of_mirrored, expected, atol=1e-5)
