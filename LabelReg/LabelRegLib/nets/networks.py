"""LocalNet, GlobalNet and CompositeNet of label-reg (Hu et al., MedIA 2018), in PyTorch.

Every network takes a moving and a fixed image ``[B, 1, K, J, I]`` and
returns a voxel DDF ``[B, 3, K, J, I]`` on the fixed grid (channels: the
displacement along i, j, k in fixed-grid voxels; resampling direction, see
:mod:`LabelRegLib.core.spatial`). A moving image of another size is first resized
to the fixed size, as the original does. Inputs of any size work: they are
zero-padded inside the network, centred, to a multiple of 16 (four 2x poolings)
and at least to the size the network was trained at (``min_input_shape``), and
the DDF is cropped back.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.config import NETWORK_TYPES  # the allowed values are defined with the settings
from ..core.spatial import resize, voxel_grid, warp
from .layers import ConvNorm, DDFSummand, DownResBlock, UpResBlock

DEPTH = 4  # number of 2x down-samplings
PAD_MULTIPLE = 2**DEPTH


def pad_centred(x: torch.Tensor, min_shape: tuple | None = None) -> tuple[torch.Tensor, list[slice]]:
    """Zero-pad the spatial dims, centred, to at least ``min_shape`` (k, j, i) and then to a multiple
    of 16; return the crop that undoes it."""
    pads, crop = [], []
    for n, least in zip(x.shape[2:], min_shape or (0, 0, 0)):
        target = max(n, int(least))
        total = target - n + (-target) % PAD_MULTIPLE
        pads.append((total // 2, total - total // 2))
        crop.append(slice(total // 2, total // 2 + n))
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dim first
    return torch.nn.functional.pad(x, flat), crop


class RegistrationNet(nn.Module):
    """Shared input handling: resize moving to fixed, concatenate, pad; subclasses predict the DDF."""

    network_type = ""
    # The working-grid size (k, j, i) the network was trained at (model header ``training_input_shape_kji``);
    # smaller inputs are padded up to it. With instance normalisation the coarse levels depend on the input
    # size, and smaller inputs run at their own size folded along their borders (measured: the model card).
    min_input_shape: tuple | None = None

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        moving = resize(moving, fixed.shape[2:])
        x, crop = pad_centred(torch.cat([moving, fixed], dim=1), self.min_input_shape)
        ddf = self.predict_ddf(x)
        return ddf[(slice(None), slice(None), *crop)]

    def predict_ddf(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Encoder(nn.Module):
    """Four residual down-sampling blocks (first kernel 7^3) and a deep conv; channels c, 2c, 4c, 8c, 16c."""

    def __init__(self, ch_in: int, num_channel_initial: int, norm: str):
        super().__init__()
        nc = [num_channel_initial * 2**i for i in range(DEPTH + 1)]
        self.channels = nc
        self.down = nn.ModuleList(
            DownResBlock(ch_in if i == 0 else nc[i - 1], nc[i], kernel0=7 if i == 0 else 3, norm=norm)
            for i in range(DEPTH)
        )
        self.deep = ConvNorm(nc[DEPTH - 1], nc[DEPTH], 3, norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for block in self.down:
            x, skip = block(x)
            skips.append(skip)
        return self.deep(x), skips


class LocalNet(RegistrationNet):
    """Dense DDF: encoder, residual up-sampling path, DDF summed over ``ddf_levels`` (0 = full resolution)."""

    network_type = "local"

    def __init__(
        self, num_channel_initial: int = 32, ddf_levels=(0, 1, 2, 3, 4), norm: str = "batch", in_channels: int = 2
    ):
        super().__init__()
        self.ddf_levels = sorted(int(level) for level in ddf_levels)
        if not self.ddf_levels or min(self.ddf_levels) < 0 or max(self.ddf_levels) > DEPTH:
            raise ValueError(f"ddf_levels must be a non-empty subset of 0..{DEPTH}, got {list(ddf_levels)}")
        self.encoder = Encoder(in_channels, num_channel_initial, norm)
        nc = self.encoder.channels
        lowest = min(self.ddf_levels)
        # up[level] goes from level+1 to level; only the levels down to the finest DDF level are built
        self.up = nn.ModuleDict(
            {str(level): UpResBlock(nc[level + 1], nc[level], norm) for level in range(DEPTH - 1, lowest - 1, -1)}
        )
        self.summands = nn.ModuleDict({str(level): DDFSummand(nc[level]) for level in self.ddf_levels})

    def predict_ddf(self, x: torch.Tensor) -> torch.Tensor:
        h, skips = self.encoder(x)
        features = {DEPTH: h}
        for level in range(DEPTH - 1, min(self.ddf_levels) - 1, -1):
            h = self.up[str(level)](h, skips[level])
            features[level] = h
        shape = x.shape[2:]
        return sum(self.summands[str(level)](features[level], shape) for level in self.ddf_levels)


class GlobalNet(RegistrationNet):
    """12-parameter affine, starting at the identity, as a DDF.

    The affine acts on voxel coordinates centred on the grid centre. Unlike the
    original's fully connected layer over the whole flattened feature map
    (which fixes the input size), the deep features are first average-pooled to
    4x4x4, so any input size works while the coarse spatial layout is kept.
    """

    network_type = "global"

    def __init__(self, num_channel_initial: int = 8, norm: str = "batch", in_channels: int = 2):
        super().__init__()
        self.encoder = Encoder(in_channels, num_channel_initial, norm)
        self.pool = nn.AdaptiveAvgPool3d(4)
        self.project = nn.Linear(self.encoder.channels[DEPTH] * 64, 12)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        # The head has thousands of inputs and Adam moves every weight by about the learning rate, so an
        # unscaled output jumps by whole units per step (a 16-channel GlobalNet mirrored its output within
        # 100 steps at lr 1e-4). Scaled outputs: matrix entries in 1/100, translations in 1/10 voxel.
        self.register_buffer("output_scale", torch.tensor([0.01, 0.01, 0.01, 0.1] * 3), persistent=False)

    def predict_affine(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 4]`` affine of grid-centred voxel coordinates (i, j, k): identity plus the scaled head output."""
        h, _ = self.encoder(x)
        change = self.project(self.pool(h).flatten(1)) * self.output_scale
        return torch.eye(3, 4, dtype=x.dtype, device=x.device) + change.reshape(-1, 3, 4)

    def predict_ddf(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.predict_affine(x)
        grid = voxel_grid(x.shape[2:], x.device, x.dtype)
        center = ((torch.tensor(x.shape[2:][::-1], dtype=x.dtype, device=x.device) - 1) / 2).reshape(3, 1, 1, 1)
        centred = grid - center
        moved = torch.einsum("brc,cxyz->brxyz", theta[:, :, :3], centred) + theta[:, :, 3, None, None, None]
        return moved - centred


class CompositeNet(RegistrationNet):
    """GlobalNet, then a LocalNet (DDF at full resolution only) on the affinely warped moving image; DDFs summed."""

    network_type = "composite"

    def __init__(
        self, num_channel_initial: int = 32, ddf_levels=(0,), norm: str = "batch", num_channel_initial_global: int = 8
    ):
        super().__init__()
        self.global_net = GlobalNet(num_channel_initial_global, norm)
        self.local_net = LocalNet(num_channel_initial, ddf_levels, norm)

    def predict_ddf(self, x: torch.Tensor) -> torch.Tensor:
        ddf_global = self.global_net.predict_ddf(x)
        moving_warped = warp(x[:, :1], ddf_global)
        ddf_local = self.local_net.predict_ddf(torch.cat([moving_warped, x[:, 1:]], dim=1))
        return ddf_global + ddf_local


def build_network(network_type: str = "local", **kwargs) -> RegistrationNet:
    """Build a network by its label-reg name (``local``, ``global``, ``composite``)."""
    kind = network_type.lower()
    if kind == "local":
        return LocalNet(**kwargs)
    if kind == "global":
        kwargs.pop("ddf_levels", None)
        return GlobalNet(**kwargs)
    if kind == "composite":
        return CompositeNet(**kwargs)
    raise ValueError(f"Unknown network_type '{network_type}'; choose one of {', '.join(NETWORK_TYPES)}.")
