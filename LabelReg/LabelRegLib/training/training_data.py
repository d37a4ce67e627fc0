"""Training data: the pairs on their working grids as padded tensors, the split, and the two-stage sampling.

:class:`TrainingData` reads the data folder (plus any phantom pairs), splits it
by case, prepares every pair as registration does (:mod:`.preprocess`) and keeps
the training pairs as tensors zero-padded to one shape, so that pairs of
different sizes batch together. :class:`EpochSampler` draws the minibatches as
label-reg does: the training pairs shuffled every epoch, then one landmark per
pair (or all of them).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.config import FOLDER_KEYS, TrainConfig
from ..core.errors import InputError
from ..core.spatial import affine_warp
from ..data.cases import Case, load_data_folder
from ..data.preprocess import WorkingPair, prepare_pair


def split_cases(n_cases: int, validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train / validation split of case indices (at least one training case)."""
    order = np.random.default_rng(seed).permutation(n_cases).tolist()
    n_val = int(round(validation_fraction * n_cases)) if validation_fraction > 0 and n_cases > 1 else 0
    n_val = min(max(n_val, 1 if validation_fraction > 0 and n_cases > 1 else 0), n_cases - 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def _pad_to(array: np.ndarray, shape) -> np.ndarray:
    return np.pad(array, [(0, n - s) for s, n in zip(array.shape, shape)])


class TrainingData:
    """The cases of a training, their working-grid pairs, the split, and the training tensors."""

    def __init__(self, config: TrainConfig, cases: list[Case] | None = None, ranks: int = 1):
        c = config
        if cases is None:
            cases = load_data_folder(
                c.data_dir or None, **{folder: getattr(c, key) or None for folder, key in FOLDER_KEYS.items()}
            )
        self.train_idx, self.val_idx = split_cases(len(cases), c.validation_fraction, c.seed)
        if c.phantom_pairs:  # synthetic pairs, in the training share only
            from ..data.phantom import make_phantom_pair

            phantoms = [make_phantom_pair(seed) for seed in range(c.phantom_pairs)]
            self.train_idx += list(range(len(cases), len(cases) + len(phantoms)))
            cases = list(cases) + [
                Case(p.name, p.moving_image, p.fixed_image, p.moving_labels, p.fixed_labels) for p in phantoms
            ]
        if c.minibatch_size * ranks > len(self.train_idx):  # a step would train on one pair twice
            raise InputError(
                "--minibatch_size",
                f"{c.minibatch_size} pairs a step{f' on each of {ranks} processes' if ranks > 1 else ''}, but the "
                f"training share holds {len(self.train_idx)} pairs ({len(self.val_idx)} of the {len(cases)} held out "
                f"for validation); give --minibatch_size {max(1, len(self.train_idx) // ranks)} or less",
            )
        self.cases = cases
        initials = glands_initials(cases, c) if c.initial_alignment == "glands" else [None] * len(cases)
        self.pairs: list[WorkingPair] = [
            prepare_pair(
                case.moving_image,
                case.fixed_image,
                case.moving_labels,
                case.fixed_labels,
                c.working_spacing or None,
                c.initial_alignment,
                initial=initial,
            )
            for case, initial in zip(cases, initials)
        ]
        self.train_shape = tuple(int(n) for n in np.max([self.pairs[i].shape for i in self.train_idx], axis=0))
        shape = self.train_shape
        self.images = {
            i: torch.as_tensor(
                np.stack([_pad_to(self.pairs[i].moving_image, shape), _pad_to(self.pairs[i].fixed_image, shape)])
            )
            for i in self.train_idx
        }
        self.labels = {
            i: (
                torch.as_tensor(np.stack([_pad_to(a, shape) for a in self.pairs[i].moving_labels])),
                torch.as_tensor(np.stack([_pad_to(a, shape) for a in self.pairs[i].fixed_labels])),
            )
            for i in self.train_idx
        }

    def normalised_unit_mm(self, case_index: int) -> torch.Tensor:
        """Millimetres per unit of the normalised [-1, 1] coordinates (i, j, k) of a pair's training tensors."""
        spacing = np.linalg.norm(self.pairs[case_index].ijk_to_ras[:3, :3], axis=0)  # voxel size along i, j, k
        half_size = (np.array(self.train_shape[::-1]) - 1) / 2
        return torch.as_tensor(spacing * half_size)

    def sample(self, case_index: int, landmarks: list[int], augmentation: dict, with_gland: bool = False):
        """Augmented ``[1, 1 + L, K, J, I]`` moving and fixed tensors: the image, then the chosen labels (and, with
        ``with_gland``, the gland label once more at the end, as the segmentation task's target)."""
        moving_labels, fixed_labels = self.labels[case_index]
        moving_image, fixed_image = self.images[case_index][:1], self.images[case_index][1:]
        if augmentation["gammas"]:
            moving_image, fixed_image = (
                moving_image ** augmentation["gammas"][0],
                fixed_image ** augmentation["gammas"][1],
            )
        if with_gland:
            landmarks = [*landmarks, 0]
        moving = torch.cat([moving_image, moving_labels[landmarks]])[None]
        fixed = torch.cat([fixed_image, fixed_labels[landmarks]])[None]
        if augmentation["flip_dims"]:
            moving, fixed = moving.flip(augmentation["flip_dims"]), fixed.flip(augmentation["flip_dims"])
        if augmentation["thetas"] is not None:
            moving = affine_warp(moving, augmentation["thetas"][0][None])
            fixed = affine_warp(fixed, augmentation["thetas"][1][None])
        return moving, fixed


def glands_initials(cases: list[Case], config: TrainConfig) -> list[np.ndarray]:
    """The ``glands`` initial alignment of every case, from the predicted glands (as registration will see them)."""
    from ..registration.gland_alignment import glands_initial
    from ..registration.glands import GlandSegmenter

    segmenter = GlandSegmenter(config.gland_model or None, "cpu")
    initials = []
    for case in cases:
        glands = segmenter.segment_pair(case.moving_image, case.fixed_image)
        initials.append(glands_initial(case.moving_image, case.fixed_image, *glands, config.gland_transform)[0])
    return initials


class EpochSampler:
    """label-reg's two-stage sampling: the training pairs in a new random order every epoch, ``per_step`` of them a
    step (all ranks together), then one landmark per pair (``one``) or every landmark (``all``)."""

    def __init__(self, data: TrainingData, per_step: int, label_sampling: str):
        self.train_idx = list(data.train_idx)
        self.n_labels = {i: len(data.pairs[i].moving_labels) for i in self.train_idx}
        self.per_step = per_step
        self.label_sampling = label_sampling
        self.order: list[int] = []  # this epoch's order of the training pairs (kept in checkpoints)

    def batch(self, step: int, generator: torch.Generator) -> list[tuple[int, list[int]]]:
        """Case and landmark indices of the whole (all-rank) minibatch of the 0-based ``step``."""
        batches_per_epoch = max(1, len(self.train_idx) // self.per_step)
        position = step % batches_per_epoch
        if position == 0 or not self.order:
            permutation = torch.randperm(len(self.train_idx), generator=generator).tolist()
            self.order = [self.train_idx[p] for p in permutation]
        chosen = [self.order[(position * self.per_step + n) % len(self.order)] for n in range(self.per_step)]
        if self.label_sampling == "all":
            return [(case, list(range(self.n_labels[case]))) for case in chosen]
        return [(case, [int(torch.randint(self.n_labels[case], (1,), generator=generator))]) for case in chosen]
