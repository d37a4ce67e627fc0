"""The gland segmentation network: one small U-Net for the MR and the TRUS gland.

The LocalNet's encoder and up-sampling blocks (:mod:`.networks`, :mod:`.layers`)
with a one-channel logit head; a second input channel holds the modality
(:data:`MODALITIES`). What it is used for, and on which grid, is :mod:`.glands`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.config import GLAND_NETWORK_TYPE  # the allowed values are defined with the settings
from .layers import UpResBlock
from .networks import DEPTH, Encoder, pad_centred

MODALITIES = {"mr": 0.0, "us": 1.0}  # the value of the modality channel


class GlandNet(nn.Module):
    """Gland logits ``[B, 1, K, J, I]`` from images ``[B, 1, K, J, I]`` and their modalities ``[B]`` (0 MR, 1 US)."""

    network_type = GLAND_NETWORK_TYPE
    min_input_shape: tuple | None = None  # the training canvas (k, j, i): smaller inputs are padded to it

    def __init__(self, num_channel_initial: int = 8, norm: str = "instance"):
        super().__init__()
        self.encoder = Encoder(2, num_channel_initial, norm)
        nc = self.encoder.channels
        self.up = nn.ModuleList(UpResBlock(nc[level + 1], nc[level], norm) for level in range(DEPTH - 1, -1, -1))
        self.head = nn.Conv3d(nc[0], 1, 3, padding=1)

    def forward(self, image: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        flag = modality.to(image.dtype).view(-1, 1, 1, 1, 1).expand_as(image)
        x, crop = pad_centred(torch.cat([image, flag], dim=1), self.min_input_shape)
        h, skips = self.encoder(x)
        for block, skip in zip(self.up, reversed(skips)):
            h = block(h, skip)
        return self.head(h)[(slice(None), slice(None), *crop)]
