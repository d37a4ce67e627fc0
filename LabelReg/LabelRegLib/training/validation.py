"""Validation during training: the network on the validation pairs at the working grid, as training sees them.

Cheaper than :mod:`.evaluation` (no resampling to each US grid) and what a
training reports and selects on; the numbers a user gets are
:mod:`.evaluation`'s (or, across pairs never trained on, :mod:`.crossval`'s).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.metrics import dice, tre_mm
from ..core.spatial import folding_fraction, warp
from ..core.volume import Volume
from ..data.preprocess import WorkingPair


@torch.no_grad()
def validate_pairs(network, pairs: list[WorkingPair], device) -> dict:
    """``val_dice`` (median gland Dice), ``val_tre_mm`` (median landmark TRE, mm) and ``val_folding`` (the largest
    folding fraction) of ``network`` over ``pairs``; empty without pairs."""
    if not pairs:
        return {}
    network.eval()
    dices, tres, foldings = [], [], []
    for pair in pairs:
        ddf = network(
            torch.as_tensor(pair.moving_image)[None, None].to(device),
            torch.as_tensor(pair.fixed_image)[None, None].to(device),
        )
        labels = torch.as_tensor(np.stack(pair.moving_labels))[:, None].to(device)
        warped = warp(labels, ddf.expand(len(labels), -1, -1, -1, -1)).cpu().numpy()[:, 0]
        dices.append(dice(warped[0], pair.fixed_labels[0]))
        landmarks = range(1, len(warped)) if len(warped) > 1 else [0]
        tres += [
            tre_mm(Volume(warped[n], pair.ijk_to_ras), Volume(pair.fixed_labels[n], pair.ijk_to_ras)) for n in landmarks
        ]
        foldings.append(folding_fraction(ddf.double()))
    finite_tres = [t for t in tres if np.isfinite(t)]  # a label warped out of view has no centroid
    return {
        "val_dice": float(np.median(dices)),
        "val_tre_mm": float(np.median(finite_tres)) if finite_tres else float("nan"),
        "val_folding": float(np.max(foldings)),
    }
