"""Training losses of label-reg: multi-scale label similarity and DDF regularisers.

Labels are ``[B, 1, K, J, I]`` float tensors in [0, 1]; a DDF is
``[B, 3, K, J, I]`` in voxels. Scales are Gaussian standard deviations in
voxels (0 = no smoothing); the Gaussian kernel is truncated at three sigma and
applied separably with zero padding, as in the original.
"""

from __future__ import annotations

import torch

from ..core.config import REGULARISER_TYPES, SIMILARITY_TYPES  # the allowed values are defined with the settings

DEFAULT_SCALES = (0, 1, 2, 4, 8, 16)
EPS = 1e-6


def gaussian_kernel1d(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor | None:
    """Normalised 1D Gaussian of standard deviation ``sigma`` voxels (``None`` for sigma 0)."""
    if sigma <= 0:
        return None
    tail = int(sigma * 3)
    x = torch.arange(-tail, tail + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * x**2 / sigma**2)
    return kernel / kernel.sum()


def _band_matrix(kernel: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, n]`` matrix of a 'same'-size, zero-padded 1D convolution with a symmetric ``kernel``."""
    tail = kernel.numel() // 2
    offset = torch.arange(n, device=kernel.device)[None, :] - torch.arange(n, device=kernel.device)[:, None]  # q - p
    inside = offset.abs() <= tail
    return torch.where(
        inside,
        kernel[(offset + tail).clamp(0, kernel.numel() - 1)],
        torch.zeros((), dtype=kernel.dtype, device=kernel.device),
    )


def separable_filter3d(volume: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """Convolve every channel of ``[B, C, K, J, I]`` with ``kernel`` along k, j and i ('same' size, zero padding).

    Written as one small matrix product per axis rather than ``conv3d``: the
    result is the same, but the cost no longer grows with the kernel width
    (a sigma of 16 voxels has 97 taps), which makes the multi-scale loss
    several times faster on the CPU.
    """
    if kernel is None:
        return volume
    for dim in (2, 3, 4):
        matrix = _band_matrix(kernel, volume.shape[dim])
        volume = torch.movedim(torch.movedim(volume, dim, -1) @ matrix.T, -1, dim)
    return volume


def _sum(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


def single_scale_loss(fixed: torch.Tensor, warped: torch.Tensor, similarity_type: str) -> torch.Tensor:
    """Per-sample loss ``[B]`` between fixed and warped moving labels (0 = perfect for dice/jaccard)."""
    if similarity_type == "dice":
        return 1 - 2 * _sum(fixed * warped) / (_sum(fixed) + _sum(warped) + EPS)
    if similarity_type == "jaccard":
        intersection = _sum(fixed * warped)
        return 1 - intersection / (_sum(fixed**2) + _sum(warped**2) - intersection + EPS)
    if similarity_type == "cross-entropy":
        p = warped.clamp(EPS, 1 - EPS)
        return -(fixed * torch.log(p) + (1 - fixed) * torch.log(1 - p)).flatten(1).mean(1)
    if similarity_type == "mean-squared":
        return ((fixed - warped) ** 2).flatten(1).mean(1)
    raise ValueError(f"Unknown similarity_type '{similarity_type}'; choose one of {', '.join(SIMILARITY_TYPES)}.")


def multi_scale_loss(
    fixed: torch.Tensor, warped: torch.Tensor, similarity_type: str = "dice", scales=DEFAULT_SCALES
) -> torch.Tensor:
    """Label dissimilarity averaged over Gaussian scales and over the batch (a scalar)."""
    losses = []
    for sigma in scales:
        kernel = gaussian_kernel1d(float(sigma), fixed.dtype, fixed.device)
        losses.append(
            single_scale_loss(
                separable_filter3d(fixed, kernel), separable_filter3d(warped, kernel), similarity_type.lower()
            )
        )
    return torch.stack(losses, dim=1).mean()


def _central_difference(field: torch.Tensor, axis: int) -> torch.Tensor:
    """Central difference along spatial ``axis`` (0 = k, 1 = j, 2 = i) of ``[B, C, K, J, I]``, interior only."""
    dim = axis + 2
    n = field.shape[dim]
    difference = (field.narrow(dim, 2, n - 2) - field.narrow(dim, 0, n - 2)) / 2
    for other in range(3):
        if other != axis:
            difference = difference.narrow(other + 2, 1, field.shape[other + 2] - 2)
    return difference


def gradient_norm(ddf: torch.Tensor, l1: bool = False) -> torch.Tensor:
    """Mean squared (or absolute, ``l1``) first derivative of the DDF: a scalar."""
    derivatives = [_central_difference(ddf, axis) for axis in range(3)]
    if l1:
        return sum(d.abs() for d in derivatives).mean()
    return sum(d**2 for d in derivatives).mean()


def bending_energy(ddf: torch.Tensor) -> torch.Tensor:
    """Mean bending energy of the DDF (second derivatives, mixed terms twice): a scalar, 0 for any affine field."""
    first = [_central_difference(ddf, axis) for axis in range(3)]
    energy = 0
    for a in range(3):
        for b in range(a, 3):
            weight = 1 if a == b else 2
            energy = energy + weight * _central_difference(first[a], b) ** 2
    return energy.mean()


def regulariser(ddf: torch.Tensor, regulariser_type: str = "bending") -> torch.Tensor:
    """The named DDF regulariser (unweighted)."""
    kind = regulariser_type.lower()
    if kind == "bending":
        return bending_energy(ddf)
    if kind == "gradient-l2":
        return gradient_norm(ddf)
    if kind == "gradient-l1":
        return gradient_norm(ddf, l1=True)
    raise ValueError(f"Unknown regulariser_type '{regulariser_type}'; choose one of {', '.join(REGULARISER_TYPES)}.")


def label_loss(ddf: torch.Tensor, labels: list, config) -> tuple[torch.Tensor, torch.Tensor]:
    """The weak supervision of one minibatch: ``(similarity, energy)``, the multi-scale label dissimilarity of
    the warped moving labels, averaged over the pairs, and the regulariser of the field (zero for a global
    network or a zero weight).

    Args:
        ddf: the predicted fields, ``[N, 3, K, J, I]`` (voxels of the working grid).
        labels: per pair, ``(moving, fixed)`` label tensors ``[1, L, K, J, I]`` (the landmarks sampled this step).
        config: the training settings (similarity type and scales, regulariser type and weight).
    """
    from ..core.spatial import warp

    similarity = 0
    for n, (moving, fixed) in enumerate(labels):
        moving, fixed = moving.transpose(0, 1).to(ddf.device), fixed.transpose(0, 1).to(ddf.device)  # [L, 1, ...]
        warped = warp(moving, ddf[n : n + 1].expand(len(moving), -1, -1, -1, -1))
        similarity = similarity + multi_scale_loss(fixed, warped, config.similarity_type, config.similarity_scales)
    if config.network_type != "global" and config.regulariser_weight:
        energy = regulariser(ddf, config.regulariser_type)
    else:
        energy = torch.zeros((), device=ddf.device)
    return similarity / len(labels), energy
