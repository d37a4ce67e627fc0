"""Evaluating a model on labelled pairs: per-landmark metrics before and after, summary, pictures."""

from __future__ import annotations

import csv
import io as _io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.metrics import dice, folding, tre_mm
from ..core.spatial import resample_volume
from ..core.writes import write_text
from ..data.cases import Case
from ..registration.registrar import Registrar, RegistrationResult

METRIC_COLUMNS = "case landmark dice_before dice_after tre_mm_before tre_mm_after folding runtime_s".split()
# with a gland model: the predicted glands against the true ones (landmark 0), per case
GLAND_COLUMNS = "gland_dice_mr gland_dice_us gland_centroid_mm_mr gland_centroid_mm_us".split()


@dataclass
class CaseEvaluation:
    rows: list[dict]
    result: RegistrationResult
    before_labels: list  # moving labels on the fixed grid after the initial alignment only
    after_labels: list  # moving labels on the fixed grid after the registration


def evaluate_case(
    registrar: Registrar, case: Case, alignment: str | None = None, passes: int | None = None, uncertainty: bool = False
) -> CaseEvaluation:
    """Register one case and measure every landmark before (initial alignment only) and after; with
    ``uncertainty``, each landmark's ``spread_mm`` too (the fields' spread at its carried MR centroid)."""
    from ..registration.uncertainty import spread_at_label

    fixed = case.fixed_image
    result = registrar.register(case.moving_image, fixed, alignment, passes, uncertainty=uncertainty)
    before = [resample_volume(label, fixed.shape, fixed.ijk_to_ras, result.initial) for label in case.moving_labels]
    after = [result.warp(label) for label in case.moving_labels]
    fold = folding(result.displacement)
    extra = {}
    if result.quality is not None:
        extra = {**result.quality.row(), **gland_accuracy(result.glands, case)}
    rows = []
    for n, (b, a, target) in enumerate(zip(before, after, case.fixed_labels)):
        rows.append(
            {
                "case": case.name,
                "landmark": n,
                "dice_before": dice(b.array, target.array),
                "dice_after": dice(a.array, target.array),
                "tre_mm_before": tre_mm(b, target),
                "tre_mm_after": tre_mm(a, target),
                "folding": fold,
                "runtime_s": result.runtime_s,
                **extra,
                **({"spread_mm": spread_at_label(result.uncertainty, a)} if uncertainty else {}),
            }
        )
    return CaseEvaluation(rows, result, before, after)


def gland_accuracy(glands: tuple, case: Case) -> dict:
    """The predicted (MR, US) glands against the case's gland labels: Dice and centroid distance (mm), per modality."""
    measures = {}
    for gland, truth, modality in zip(glands, (case.moving_labels[0], case.fixed_labels[0]), ("mr", "us")):
        on_grid = resample_volume(truth, gland.probability.shape, gland.probability.ijk_to_ras)
        measures[f"gland_dice_{modality}"] = dice(gland.probability.array, on_grid.array)
        measures[f"gland_centroid_mm_{modality}"] = tre_mm(gland.probability, truth)
    return measures


def per_case_rows(rows: list[dict]) -> list[dict]:
    """One row per case from per-landmark rows: gland (landmark 0) Dice, median landmark TRE, folding."""
    cases: dict[str, list[dict]] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    table = []
    for name, landmarks in cases.items():
        gland = landmarks[0]
        others = [r for r in landmarks if r["landmark"] > 0] or [gland]
        table.append(
            {
                "case": name,
                "fold": gland.get("fold", ""),
                "dice_before": gland["dice_before"],
                "dice_after": gland["dice_after"],
                "tre_mm_before": statistics.median(r["tre_mm_before"] for r in others),
                "tre_mm_after": statistics.median(r["tre_mm_after"] for r in others),
                "folding": gland["folding"],
                **{key: value for key, value in gland.items() if key.startswith(("quality_", "gland_"))},
            }
        )
    return table


def quality_ranking(rows: list[dict], threshold: float | None = None) -> dict:
    """How well the quality score ranks the true error, over cases: Spearman correlations of the quality Dice and
    of the quality centroid distance with the case's median landmark TRE, and, with a threshold, the median TRE of
    the flagged and the other cases."""
    from ..core.metrics import spearman

    table = [row for row in per_case_rows(rows) if row.get("quality_dice") is not None]
    if not table:
        return {}
    tre = [row["tre_mm_after"] for row in table]
    ranking = {
        "spearman_quality_dice_vs_tre": spearman([row["quality_dice"] for row in table], tre),
        "spearman_quality_centroid_vs_tre": spearman([row["quality_centroid_mm"] for row in table], tre),
    }
    if threshold is not None:
        flagged = [row["quality_dice"] < threshold for row in table]
        for name, keep in (("flagged", True), ("unflagged", False)):
            values = [t for t, f in zip(tre, flagged) if f == keep]
            ranking[f"n_{name}"] = len(values)
            ranking[f"tre_mm_median_{name}"] = float(np.median(values)) if values else float("nan")
    return ranking


def summarise(rows: list[dict]) -> dict:
    """Medians over cases: gland (landmark 0) Dice, landmark (>= 1; gland if none) TRE, max folding, runtime."""
    gland = [r for r in rows if r["landmark"] == 0]
    landmarks = [r for r in rows if r["landmark"] > 0] or gland
    return {
        "n_pairs": len(gland),
        "gland_dice_median": float(np.median([r["dice_after"] for r in gland])),
        "gland_dice_before_median": float(np.median([r["dice_before"] for r in gland])),
        "tre_mm_median": float(np.nanmedian([r["tre_mm_after"] for r in landmarks])),
        "tre_mm_before_median": float(np.nanmedian([r["tre_mm_before"] for r in landmarks])),
        "folding_max": float(np.max([r["folding"] for r in gland])),
        "runtime_s_median": float(np.median([r["runtime_s"] for r in gland])),
    }


def metric_columns(rows: list[dict]) -> list[str]:
    """The CSV columns of evaluation rows: the metrics, then the quality and gland columns when they are there."""
    from ..registration.quality import QUALITY_COLUMNS

    present = set(rows[0]) if rows else set()
    return METRIC_COLUMNS + [c for c in (*QUALITY_COLUMNS, *GLAND_COLUMNS, "spread_mm") if c in present]


def write_metrics_csv(rows: list[dict], path: Path, columns=None) -> None:
    """``rows`` as CSV (floats to 6 significant digits; ``columns`` default: :func:`metric_columns`), written
    atomically."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or metric_columns(rows)))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buffer.getvalue())


def write_summary(summary: dict, path: Path) -> None:
    write_text(path, json.dumps(summary, indent=2) + "\n")


def report_files(cases: list[Case], pictures: bool = True) -> list[str]:
    """The names of the files :func:`evaluate_cases` writes into its folder."""
    return ["metrics.csv", "summary.json", *(f"{case.name}.png" for case in cases if pictures)]


def evaluate_cases(
    registrar: Registrar,
    cases: list[Case],
    output_dir: str | Path,
    alignment: str | None = None,
    pictures: bool = True,
    log=print,
    passes: int | None = None,
    uncertainty: bool = False,
) -> tuple[dict, list[dict]]:
    """Evaluate every case; write ``metrics.csv``, ``summary.json`` and one PNG per case into ``output_dir``
    (``uncertainty``: each landmark's spread too). Returns the summary and the per-landmark rows."""
    from .figures import case_figure

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in cases:
        evaluation = evaluate_case(registrar, case, alignment, passes, uncertainty)
        rows += evaluation.rows
        gland = evaluation.rows[0]
        quality = evaluation.result.quality
        log(
            f"{case.name}: gland Dice {gland['dice_before']:.3f} -> {gland['dice_after']:.3f}, runtime {gland['runtime_s']:.2f} s"
            + (f"; {quality.text()}" if quality else "")
        )
        if pictures:
            case_figure(
                case,
                evaluation.before_labels,
                evaluation.after_labels,
                evaluation.result,
                output_dir / f"{case.name}.png",
            )
    summary = summarise(rows)
    threshold = registrar.glands.header.get("quality_dice_threshold") if registrar.glands else None
    summary.update(quality_ranking(rows, threshold))
    write_metrics_csv(rows, output_dir / "metrics.csv")
    write_summary(summary, output_dir / "summary.json")
    return summary, rows
