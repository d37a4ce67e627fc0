"""K-fold cross-validation of a training recipe: the honest estimate of how LabelReg registers pairs it never saw.

The cases of the recipe's data are split into K folds (by case, each case in
exactly one fold, sizes differing by at most one). For each fold, the recipe
is trained on the other folds' cases, every stage in turn (a stage's
``initial_model`` replaced by the same fold's previous stage), with the
recipe's own validation split taken inside those cases only; the fold's final
model then registers the held-out cases, which no decision of that fold has
seen. The held-out rows of all folds, pooled, are the estimate
(docs/design.md, "Data flow"; Hu et al. 2018 report 12-fold cross-validation
for the same reason).

Output, under the cross-validation folder::

    fold<k>/stage<s>/   each training's run folder (model, checkpoint, curves; resumable)
    fold<k>/held_out/   the fold model on its held-out cases (metrics.csv, summary.json)
    fold<k>/glands/     with ``glands``: the fold's gland segmentation model, trained on the same cases
    metrics.csv         every held-out landmark row of every fold, with its fold
    per_case.csv        one row per case: fold, gland Dice and median landmark TRE before and after, folding
                        (with ``glands``: the quality score and the predicted glands' accuracy)
    split.json          the split, written first: K, the seed and each fold's cases (a resume must match it)
    summary.json        pooled medians, each fold's (the same medians over its cases), which case was in which fold;
                        with ``glands``, the quality score's threshold and how well it ranks the true TRE

With ``glands`` (implied by a recipe whose ``initial_alignment`` is ``glands``),
each fold first trains its own gland model, which that fold's recipe aligns with
and which gives the held-out registrations their quality score. The threshold
that flags a registration is fixed by a rule set before any measurement: the
quality Dice below which the worst :data:`QUALITY_FLAG_FRACTION` of the held-out
pairs fall.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core.config import FOLDER_KEYS, TrainConfig
from ..core.errors import InputError
from ..core.writes import write_text
from ..data.cases import Case, load_data_folder
from .evaluate import per_case_rows

SPLIT_NAME = "split.json"  # the folds a cross-validation folder was made with
DONE_NAME = "done.json"  # written in a stage's run folder once its training has finished
QUALITY_FLAG_FRACTION = 0.2  # the share of held-out pairs whose quality Dice sets the flagging threshold


def assign_folds(n_cases: int, folds: int, seed: int) -> list[list[int]]:
    """Case indices of each fold: a seeded permutation dealt out in turn (each case in exactly one fold)."""
    if not 2 <= folds <= n_cases:
        raise InputError("--folds", f"{folds} folds need 2 to {n_cases} (the number of cases)")
    order = np.random.default_rng(seed).permutation(n_cases).tolist()
    return [sorted(order[k::folds]) for k in range(folds)]


def pooled_summary(rows: list[dict]) -> dict:
    """Medians over the held-out cases (per-case medians of the landmark TRE), the worst folding, and the cases
    that end with a lower gland Dice than they started with."""
    table = per_case_rows(rows)
    return {
        "n_pairs": len(table),
        "gland_dice_before_median": statistics.median(r["dice_before"] for r in table),
        "gland_dice_median": statistics.median(r["dice_after"] for r in table),
        "tre_mm_before_median": statistics.median(r["tre_mm_before"] for r in table),
        "tre_mm_median": statistics.median(r["tre_mm_after"] for r in table),
        "folding_max": max(r["folding"] for r in table),
        "cases_worse_than_start": sorted(r["case"] for r in table if r["dice_after"] < r["dice_before"]),
    }


class CrossValidation:
    """K-fold cross-validation of a recipe of one or more training stages.

    Args:
        stages: the recipe's settings, stage by stage (a later stage fine-tunes the previous one's model).
        folds: K, the number of folds.
        output: the cross-validation folder.
        resume: continue an interrupted cross-validation (finished stages are kept, a stage with a checkpoint
            resumes from it).
        overwrite: start again over a folder that holds one.
        glands: also train a gland segmentation model per fold (quality score; implied by a glands alignment).
        gland_settings: its settings (default: :class:`.GlandSettings`).
        gland_models_from: another cross-validation folder on the same split whose fold gland models
            (``fold<k>/glands/model.pt``) this one uses instead of training its own (to compare gland recipes on the
            same registration fold models).
        cases: the cases (default: read from the first stage's data settings).
        log: where progress lines go.
    """

    def __init__(
        self,
        stages: list[TrainConfig],
        folds: int,
        output: str | Path,
        resume: bool = False,
        overwrite: bool = False,
        cases: list[Case] | None = None,
        log=print,
        glands: bool = False,
        gland_settings=None,
        gland_models_from: str | Path | None = None,
    ):
        from ..core.outputs import check_output_folder

        self.stages = stages
        self.glands = glands or any(stage.initial_alignment == "glands" for stage in stages)
        self.gland_settings = gland_settings
        self.gland_folder = Path(gland_models_from) if gland_models_from else None
        self.output = check_output_folder("--output", output)
        self.resume, self.overwrite, self.log = resume, overwrite, log
        first = stages[0]
        self.cases = (
            cases
            if cases is not None
            else load_data_folder(
                first.data_dir or None, **{folder: getattr(first, key) or None for folder, key in FOLDER_KEYS.items()}
            )
        )
        self.folds = assign_folds(len(self.cases), folds, first.seed)
        self._claim_split(first.seed)

    def _claim_split(self, seed: int) -> None:
        """Write ``split.json``, or check the one there: resuming under another split would measure held-out cases
        with models trained on them."""
        split = {
            "folds": len(self.folds),
            "seed": seed,
            "cases": [[self.cases[i].name for i in fold] for fold in self.folds],
        }
        path, where = self.output / SPLIT_NAME, f"--output {self.output}"
        earlier = json.loads(path.read_text()) if path.is_file() else None
        if not self.overwrite:
            if (earlier is not None or (self.output / "summary.json").exists()) and not self.resume:
                raise InputError(
                    where, "holds a cross-validation already; --resume continues it, --overwrite starts again"
                )
            if earlier is None and self.resume and any(self.output.glob("fold*")):
                raise InputError(
                    where, f"has folds but no {SPLIT_NAME} to check them against; --overwrite starts again"
                )
            if earlier is not None and earlier != split:
                other = (
                    "other cases in its folds"
                    if (earlier.get("folds"), earlier.get("seed")) == (split["folds"], split["seed"])
                    else f"{earlier.get('folds')} folds, seed {earlier.get('seed')}"
                )
                raise InputError(
                    where,
                    f"was made with {other} ({SPLIT_NAME}); resume with the same --folds, --seed and data, or "
                    "--overwrite starts again",
                )
        write_text(path, json.dumps(split, indent=2) + "\n")

    def stage_config(self, fold: int, stage: int) -> TrainConfig:
        """Stage ``stage`` of fold ``fold``: its own run folder, starting from the fold's previous stage, aligning
        with the fold's gland model."""
        folder = self.output / f"fold{fold}" / f"stage{stage}"
        previous = self.output / f"fold{fold}" / f"stage{stage - 1}" / "model.pt"
        return replace(
            self.stages[stage],
            output_dir=str(folder),
            file_model_save=str(folder / "model.pt"),
            initial_model=str(previous) if stage > 0 else self.stages[stage].initial_model,
            gland_model=str(self.gland_model(fold)) if self.glands else self.stages[stage].gland_model,
            data_dir="",
            **{key: "" for key in FOLDER_KEYS.values()},
        ).validate()

    def gland_model(self, fold: int) -> Path:
        return (self.gland_folder or self.output) / f"fold{fold}" / "glands" / "model.pt"

    def train_glands(self, fold: int, device: str = "auto") -> Path:
        """The gland segmentation model of fold ``fold``, trained on the other folds' cases (kept when finished)."""
        from ..training.gland_training import GlandTrainer

        model = self.gland_model(fold)
        folder = model.parent
        if self.gland_folder is not None and not (folder / DONE_NAME).is_file():
            raise InputError(str(folder), f"holds no finished gland model of fold {fold}")
        if (folder / DONE_NAME).is_file() and (self.gland_folder is not None or not self.overwrite):
            self.log(f"fold {fold} glands: finished earlier ({model})")
            return model
        training_cases = [self.cases[i] for k, idx in enumerate(self.folds) if k != fold for i in idx]
        self.log(f"fold {fold} glands: training on {len(training_cases)} cases into {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        GlandTrainer(training_cases, model, self.gland_settings, device, self.stages[0].data_dir).run()
        write_text(folder / DONE_NAME, json.dumps({"model": str(model)}) + "\n")
        return model

    def train_fold(self, fold: int) -> Path:
        """Every stage of fold ``fold`` on the other folds' cases (finished stages kept); the final model."""
        from ..training.trainer import Trainer

        training_cases = [self.cases[i] for k, idx in enumerate(self.folds) if k != fold for i in idx]
        model = None
        for stage in range(len(self.stages)):
            config = self.stage_config(fold, stage)
            folder, model = Path(config.output_dir), config.model_path()
            if (folder / DONE_NAME).is_file() and not self.overwrite:
                self.log(f"fold {fold} stage {stage}: finished earlier ({model})")
                continue
            resume = self.resume and (folder / "checkpoint.pt").is_file()
            self.log(f"fold {fold} stage {stage}: training on {len(training_cases)} cases into {folder}")
            Trainer(config, cases=training_cases, overwrite=self.overwrite).run(resume=resume)
            write_text(folder / DONE_NAME, json.dumps({"model": str(model)}) + "\n")
        return model

    def run(self, device: str = "auto", mirror_axes: str | None = None, only: list[int] | None = None) -> dict:
        """Train and evaluate every fold; write the pooled tables and ``summary.json``; returns the summary.
        ``mirror_axes``: the registrations' test-time mirroring (:class:`.Registrar`; None: as each model was
        trained). ``only``: these folds alone, trained and evaluated, nothing pooled (folds in parallel processes,
        pooled by a run over every fold, which keeps the finished ones); returns their ``per_fold`` entries."""
        from .evaluate import metric_columns, quality_ranking, write_metrics_csv
        from .trust import self_check_detector, uncertainty_ranking

        for fold in only or ():
            if not 0 <= fold < len(self.folds):
                raise InputError("--fold", f"{fold}: the folds are 0 to {len(self.folds) - 1}")
        rows, per_fold = [], []
        for fold in only or range(len(self.folds)):
            fold_rows = self.evaluate_fold(fold, device, mirror_axes)
            rows += fold_rows
            per_fold.append(
                {"fold": fold, "cases": [self.cases[i].name for i in self.folds[fold]], **pooled_summary(fold_rows)}
            )
        if only:
            return {"per_fold": per_fold}
        write_metrics_csv(rows, self.output / "metrics.csv", [*metric_columns(rows), "fold"])
        table = per_case_rows(rows)
        write_metrics_csv(table, self.output / "per_case.csv", list(table[0]))
        summary = {"folds": len(self.folds), **pooled_summary(rows), "per_fold": per_fold}
        summary["uncertainty"] = uncertainty_ranking(rows)
        if self.glands:
            threshold = float(np.quantile([row["quality_dice"] for row in table], QUALITY_FLAG_FRACTION))
            summary["quality"] = {
                "dice_threshold": threshold,
                **quality_ranking(rows, threshold),
                "detector": self_check_detector(table, threshold),
            }
        write_text(self.output / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def evaluate_fold(self, fold: int, device: str = "auto", mirror_axes: str | None = None) -> list[dict]:
        """Fold ``fold``'s models (trained first where not finished) register its held-out pairs (rows in
        ``fold<k>/held_out``, each landmark's spread included); the per-landmark rows, with their fold."""
        from ..registration.registrar import Registrar
        from .evaluate import evaluate_cases

        gland_model = self.train_glands(fold, device) if self.glands else False
        registrar = Registrar(self.train_fold(fold), device, mirror_axes, gland_model=gland_model)
        _, rows = evaluate_cases(
            registrar,
            [self.cases[i] for i in self.folds[fold]],
            self.output / f"fold{fold}" / "held_out",
            pictures=False,
            log=self.log,
            uncertainty=True,
        )
        return [{**row, "fold": fold} for row in rows]
