"""How far to trust a registration: how well its two warnings predict its true error, over held-out rows.

- The per-target uncertainty (:mod:`..registration.uncertainty`): each landmark's ``spread_mm`` (the spread of the
  pipeline's fields at the centroid of the carried MR landmark) against its true TRE: Spearman, the ROC AUC for
  TRE above :data:`LARGE_TRE_MM`, and the median TRE of the landmarks above and below a spread threshold that each
  fold takes from the other folds' landmarks (so no landmark sets its own threshold).
- The self-check as a failure detector: the share of pairs with TRE above :data:`FAILURE_TRE_MM` that it flags,
  and the share of the other pairs it flags.

Both rules (the cut-offs, the threshold's quantile) are fixed here, before any measurement.
"""

from __future__ import annotations

import numpy as np

from ..core.metrics import roc_auc, spearman

LARGE_TRE_MM = 8.0  # a landmark this far off is one the uncertainty should single out
FAILURE_TRE_MM = 10.0  # a pair whose median landmark TRE is this far off is a failed registration
SPREAD_FLAG_FRACTION = 0.2  # the share of the other folds' landmarks above the spread threshold


def uncertainty_ranking(rows: list[dict]) -> dict:
    """The spread against the TRE over every held-out landmark (gland excluded) of per-landmark ``rows`` (with
    ``fold``, ``spread_mm``, ``tre_mm_after``); empty when the rows have no spread."""
    landmarks = [
        row
        for row in rows
        if row["landmark"] > 0 and np.isfinite(row.get("spread_mm", np.nan)) and np.isfinite(row["tre_mm_after"])
    ]
    if not landmarks:
        return {}
    spread = np.array([row["spread_mm"] for row in landmarks])
    tre = np.array([row["tre_mm_after"] for row in landmarks])
    folds = np.array([row.get("fold", 0) for row in landmarks])
    flagged = np.zeros(len(landmarks), dtype=bool)
    thresholds = {}
    for fold in np.unique(folds):
        others = spread[folds != fold] if np.any(folds != fold) else spread
        thresholds[str(fold)] = float(np.quantile(others, 1 - SPREAD_FLAG_FRACTION))
        flagged[folds == fold] = spread[folds == fold] > thresholds[str(fold)]
    return {
        "n_landmarks": len(landmarks),
        "spread_mm_median": float(np.median(spread)),
        "spearman_spread_vs_tre": spearman(spread, tre),
        "large_tre_mm": LARGE_TRE_MM,
        "n_large_tre": int((tre > LARGE_TRE_MM).sum()),
        "auc_large_tre": roc_auc(spread, tre > LARGE_TRE_MM),
        "spread_threshold_mm_per_fold": thresholds,
        "n_flagged": int(flagged.sum()),
        "tre_mm_median_flagged": float(np.median(tre[flagged])) if flagged.any() else float("nan"),
        "tre_mm_median_unflagged": float(np.median(tre[~flagged])) if (~flagged).any() else float("nan"),
    }


def self_check_detector(table: list[dict], threshold: float) -> dict:
    """The self-check as a detector of failed registrations, over per-case ``table`` rows (with ``quality_dice`` and
    ``tre_mm_after``): flagged below ``threshold``."""
    rows = [row for row in table if row.get("quality_dice") is not None and np.isfinite(row["tre_mm_after"])]
    failed = [row["quality_dice"] < threshold for row in rows if row["tre_mm_after"] > FAILURE_TRE_MM]
    others = [row["quality_dice"] < threshold for row in rows if row["tre_mm_after"] <= FAILURE_TRE_MM]
    return {
        "failure_tre_mm": FAILURE_TRE_MM,
        "n_failed": len(failed),
        "share_of_failed_flagged": float(np.mean(failed)) if failed else float("nan"),
        "share_of_others_flagged": float(np.mean(others)) if others else float("nan"),
    }
