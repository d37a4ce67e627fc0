"""Evaluation metrics, named the same everywhere (docs/design.md, "Conventions").

``dice``: binary Dice at threshold 0.5; ``tre_mm``: distance in mm between
label centroids in RAS (the two labels may live on different grids);
``folding``: fraction of voxels whose Jacobian determinant is <= 0.
"""

from __future__ import annotations

import numpy as np

from .volume import Volume

THRESHOLD = 0.5


def dice(label_a: np.ndarray, label_b: np.ndarray) -> float:
    """Binary Dice of two same-shape arrays, each thresholded at 0.5. Two empty labels give 1."""
    a = np.asarray(label_a) >= THRESHOLD
    b = np.asarray(label_b) >= THRESHOLD
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def centroid_ras(label: Volume) -> np.ndarray:
    """RAS centroid (mm) of the voxels of ``label`` at or above 0.5; NaN if there are none."""
    k, j, i = np.nonzero(np.asarray(label.array) >= THRESHOLD)
    if k.size == 0:
        return np.full(3, np.nan)
    mean_ijk = np.array([i.mean(), j.mean(), k.mean()])
    return label.ijk_to_ras[:3, :3] @ mean_ijk + label.ijk_to_ras[:3, 3]


def tre_mm(label_a: Volume, label_b: Volume) -> float:
    """Distance (mm) between the RAS centroids of two labels; NaN if either is empty."""
    return float(np.linalg.norm(centroid_ras(label_a) - centroid_ras(label_b)))


def spearman(a, b) -> float:
    """Spearman's rank correlation of two sequences (ties get their average rank; NaN pairs dropped)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:  # too few, or a constant: no ranking
        return float("nan")
    return float(np.corrcoef(ranks(a[keep]), ranks(b[keep]))[0, 1])


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0 (ties get their average rank)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    rank = np.empty(len(x))
    rank[order] = np.arange(len(x), dtype=float)
    values, counts = np.unique(x, return_counts=True)
    for value in values[counts > 1]:  # tied values share their mean rank
        rank[x == value] = rank[x == value].mean()
    return rank


def roc_auc(scores, positive) -> float:
    """Area under the ROC curve of ``scores`` separating the ``positive`` cases (booleans) from the others: the
    chance that a positive scores higher than a negative, ties counted half (Mann-Whitney U); NaN pairs dropped,
    NaN without both classes."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    keep = np.isfinite(scores)
    scores, positive = scores[keep], positive[keep]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = ranks(scores)[positive].sum() + n_pos  # ranks from 1
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def folding(displacement_ras: Volume) -> float:
    """Fraction of voxels where ``x -> x + u(x)`` has Jacobian determinant <= 0.

    ``displacement_ras`` holds RAS mm vectors ``[K, J, I, 3]`` on its grid.
    """
    import torch

    from .spatial import ddf_ras_to_voxel, folding_fraction

    field = torch.as_tensor(np.moveaxis(displacement_ras.array, -1, 0)[None], dtype=torch.float64)
    return folding_fraction(ddf_ras_to_voxel(field, displacement_ras.ijk_to_ras))
