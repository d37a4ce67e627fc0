"""Auxiliary gland segmentation, a training-only task that shares the LocalNet's features.

The registration loss only says, through warped labels, how far the two glands
are apart; with a few dozen training pairs a LocalNet learns to register its
training pairs but finds the gland poorly in new ones. Segmenting the gland in
both images is a denser lesson from the same labels: every voxel is labelled.
A 3x3x3 convolution reads the LocalNet's full-resolution decoder features and
predicts the probability of "moving gland" and "fixed gland" at every voxel
of the working grid (the moving image is already resampled onto it), and its
soft Dice loss is added to the registration loss with ``segmentation_weight``.

The head lives beside the network, not in it: it is trained and checkpointed
with it, but the saved model file holds the registration network only, so
registration (and every reader of model files) is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .losses import single_scale_loss
from .networks import LocalNet


class GlandSegmentationHead(nn.Module):
    """Gland probabilities ``[B, 2, K, J, I]`` (moving, fixed) from a LocalNet's level-0 features."""

    def __init__(self, network: LocalNet):
        super().__init__()
        if not isinstance(network, LocalNet) or min(network.ddf_levels) != 0:
            raise ValueError("the gland segmentation task needs a LocalNet with DDF level 0 (full-resolution features)")
        self.conv = nn.Conv3d(network.encoder.channels[0], 2, 3, padding=1)
        self._features: torch.Tensor | None = None
        # the decoder's last up-sampling block outputs the level-0 features; keep them at each forward pass
        network.up["0"].register_forward_hook(self._keep_features)

    def _keep_features(self, module, inputs, output) -> None:
        self._features = output

    def forward(self, shape_kji) -> torch.Tensor:
        """Probabilities from the features of the network's last forward pass, cropped to ``shape_kji``.

        The network pads its input to a multiple of 16 around the centre; the same centred crop undoes it.
        """
        if self._features is None:
            raise RuntimeError("run the registration network first")
        logits = self.conv(self._features)
        crop = [slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(logits.shape[2:], shape_kji)]
        return torch.sigmoid(logits[(slice(None), slice(None), *crop)])


def segmentation_loss(probabilities: torch.Tensor, glands: torch.Tensor) -> torch.Tensor:
    """Mean soft Dice loss of ``[B, 2, K, J, I]`` gland probabilities against the gland labels."""
    return single_scale_loss(glands.flatten(0, 1)[:, None], probabilities.flatten(0, 1)[:, None], "dice").mean()
