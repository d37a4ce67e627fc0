"""Building blocks of the label-reg networks (Hu et al. 2018), in PyTorch.

Tensors are ``[B, C, K, J, I]``. Each block mirrors one of the original
TensorFlow tutorial's blocks: convolution + normalisation + ReLU, a residual
down-sampling block that returns its first feature map as the skip connection,
a residual up-sampling block with additive trilinear up-sampling, and the
zero-initialised DDF output convolution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.config import NORMS  # the allowed values are defined with the settings


def make_norm(kind: str, channels: int) -> nn.Module:
    """``batch`` (the original), ``instance`` (batch-size independent), or ``none``."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"Unknown normalisation '{kind}'; choose one of {', '.join(NORMS)}.")


class ConvNorm(nn.Module):
    """3D convolution ('same' padding, no bias) then normalisation; ReLU unless ``relu=False``."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int = 3, norm: str = "batch", relu: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(ch_in, ch_out, kernel, padding=kernel // 2, bias=False)
        self.norm = make_norm(norm, ch_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class DownResBlock(nn.Module):
    """Conv (kernel ``kernel0``) -> residual pair of convs -> 2x max-pool. Returns ``(pooled, skip)``."""

    def __init__(self, ch_in: int, ch_out: int, kernel0: int = 3, norm: str = "batch"):
        super().__init__()
        self.conv0 = ConvNorm(ch_in, ch_out, kernel0, norm)
        self.res1 = ConvNorm(ch_out, ch_out, 3, norm)
        self.res2 = ConvNorm(ch_out, ch_out, 3, norm, relu=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = self.conv0(x)
        r2 = F.relu(self.res2(self.res1(h0)) + h0)
        return F.max_pool3d(r2, 2), h0


def additive_upsampling(x: torch.Tensor, shape_kji) -> torch.Tensor:
    """Trilinear resize to ``shape_kji``, then sum the two halves of the channels (C -> C/2)."""
    x = F.interpolate(x, size=tuple(shape_kji), mode="trilinear", align_corners=False)
    half = x.shape[1] // 2
    return x[:, :half] + x[:, half:]


class UpResBlock(nn.Module):
    """Transposed conv (x2) plus additive up-sampling, added to the skip, then a residual pair of convs."""

    def __init__(self, ch_in: int, ch_out: int, norm: str = "batch"):
        super().__init__()
        self.deconv = nn.ConvTranspose3d(ch_in, ch_out, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.deconv_norm = make_norm(norm, ch_out)
        self.res1 = ConvNorm(ch_out, ch_out, 3, norm)
        self.res2 = ConvNorm(ch_out, ch_out, 3, norm, relu=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h0 = F.relu(self.deconv_norm(self.deconv(x)))
        h0 = h0 + additive_upsampling(x, skip.shape[2:])
        r1 = h0 + skip
        return F.relu(self.res2(self.res1(h0)) + r1)


class DDFSummand(nn.Module):
    """Zero-initialised 3x3x3 conv to 3 channels (a voxel DDF, channels i, j, k), resized to the output grid."""

    def __init__(self, ch_in: int):
        super().__init__()
        self.conv = nn.Conv3d(ch_in, 3, 3, padding=1, bias=True)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, shape_kji) -> torch.Tensor:
        ddf = self.conv(x)
        if tuple(ddf.shape[2:]) != tuple(shape_kji):
            ddf = F.interpolate(ddf, size=tuple(shape_kji), mode="trilinear", align_corners=False)
        return ddf
