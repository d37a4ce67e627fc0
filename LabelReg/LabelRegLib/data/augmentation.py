"""Training augmentation: one small object per kind, drawn from one generator in a fixed order.

Each object draws its parameters for a minibatch of pairs only when it is on,
so a training without it draws nothing for it and stays reproducible:
:class:`RandomAffine` (label-reg's random affine of each side, ``corner_scale``),
:class:`RandomFlip` (mirroring whole pairs along working-grid axes,
``flip_axes``), :class:`RandomGamma` (each image's intensities raised to a
random power, ``intensity_gamma``) and :class:`RandomShift` (shifts of the moving
side, ``translation_mm``, then of the fixed side in its field of view,
``fixed_translation_mm``, added to the affine). :class:`Augmentation` draws them
in that order; :meth:`.TrainingData.sample` applies the result.
"""

from __future__ import annotations

import torch

from ..core.config import TrainConfig
from ..core.spatial import random_affine

FLIP_DIMS = {"i": 4, "j": 3, "k": 2}  # working-grid axis -> dimension of a [B, C, K, J, I] tensor


class RandomAffine:
    def __init__(self, corner_scale: float):
        self.corner_scale = corner_scale

    def draw(self, n_pairs: int, generator: torch.Generator) -> torch.Tensor | None:
        """``[2 * n_pairs, 3, 4]`` normalised affines (moving, fixed, moving, ...), or None when off."""
        return random_affine(2 * n_pairs, self.corner_scale, generator) if self.corner_scale > 0 else None


class RandomFlip:
    def __init__(self, axes: str):
        self.dims = [FLIP_DIMS[axis] for axis in axes]

    def draw(self, n_pairs: int, generator: torch.Generator) -> list[list[int]]:
        """The tensor dimensions each pair is mirrored along (each axis with probability 1/2)."""
        if not self.dims:
            return [[] for _ in range(n_pairs)]
        chosen = torch.rand(n_pairs, len(self.dims), generator=generator) < 0.5
        return [[d for d, flip in zip(self.dims, row) if flip] for row in chosen]


class RandomGamma:
    def __init__(self, sd_log_gamma: float):
        self.sd = sd_log_gamma

    def draw(self, n_pairs: int, generator: torch.Generator) -> list[tuple[float, float] | None]:
        """``(moving gamma, fixed gamma)`` of each pair, or None when off."""
        if self.sd <= 0:
            return [None] * n_pairs
        gammas = torch.exp(self.sd * torch.randn(2 * n_pairs, generator=generator))
        return [(float(gammas[2 * n]), float(gammas[2 * n + 1])) for n in range(n_pairs)]


class RandomShift:
    def __init__(self, moving_mm: float, fixed_mm: float):
        self.ranges_mm = (moving_mm, fixed_mm)

    @property
    def on(self) -> bool:
        return any(range_mm > 0 for range_mm in self.ranges_mm)

    def add(self, thetas: torch.Tensor, units_mm: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``thetas`` with shifts uniform in +-range mm per axis added, moving side first; ``units_mm``: mm per
        normalised unit (i, j, k) of each pair."""
        n_pairs = len(units_mm)
        for side, range_mm in enumerate(self.ranges_mm):
            if range_mm > 0:
                shifts = (2 * torch.rand(n_pairs, 3, generator=generator, dtype=torch.float64) - 1) * range_mm
                thetas[side::2, :, 3] += (shifts / units_mm).float()
        return thetas


class Augmentation:
    """The augmentations a :class:`~LabelRegLib.core.config.TrainConfig` switches on."""

    def __init__(self, config: TrainConfig):
        self.affine = RandomAffine(config.corner_scale)
        self.flip = RandomFlip(config.flip_axes)
        self.gamma = RandomGamma(config.intensity_gamma)
        self.shift = RandomShift(config.translation_mm, config.fixed_translation_mm)

    def draw(self, case_indices: list[int], data, generator: torch.Generator) -> list[dict]:
        """Augmentation parameters of the pairs ``case_indices`` of ``data`` (a :class:`.TrainingData`):
        ``thetas`` (moving, fixed affines, or None), ``flip_dims`` and ``gammas`` (or None) per pair."""
        n_pairs = len(case_indices)
        thetas = self.affine.draw(n_pairs, generator)
        flips = self.flip.draw(n_pairs, generator)
        gammas = self.gamma.draw(n_pairs, generator)
        if self.shift.on:
            thetas = torch.eye(3, 4).repeat(2 * n_pairs, 1, 1) if thetas is None else thetas
            thetas = self.shift.add(
                thetas, torch.stack([data.normalised_unit_mm(case) for case in case_indices]), generator
            )
        return [
            {
                "thetas": None if thetas is None else (thetas[2 * n], thetas[2 * n + 1]),
                "flip_dims": flips[n],
                "gammas": gammas[n],
            }
            for n in range(n_pairs)
        ]
