"""Cross-validation: folds by case, every stage per fold, held-out results pooled, resumable."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
from LabelRegLib import cli
from LabelRegLib.core.config import train_config_from_ini
from LabelRegLib.core.errors import InputError
from LabelRegLib.evaluation.crossval import assign_folds


@pytest.mark.parametrize("n_cases, folds, seed", [(90, 3, 0), (90, 12, 5), (7, 3, 1), (6, 6, 2), (2, 2, 0)])
def test_every_case_is_in_exactly_one_fold(n_cases, folds, seed):
    assignment = assign_folds(n_cases, folds, seed)
    assert len(assignment) == folds
    every = [case for fold in assignment for case in fold]
    assert sorted(every) == list(range(n_cases)), "a case in two folds, or in none"
    sizes = [len(fold) for fold in assignment]
    assert max(sizes) - min(sizes) <= 1
    assert assignment == assign_folds(n_cases, folds, seed), "the same seed gives the same folds"


def test_a_fold_count_the_cases_cannot_fill_is_refused():
    with pytest.raises(InputError, match="--folds: 4 folds need 2 to 3"):
        assign_folds(3, 4, 0)
    with pytest.raises(InputError, match="--folds: 1 folds need 2 to 5"):
        assign_folds(5, 1, 0)


RECIPE = """[Data]
data_dir = {data}
[Network]
num_channel_initial = 4
[Train]
total_iterations = 2
minibatch_size = 2
freq_validation = 2
freq_model_save = 2
validation_fraction = 0.25
output_dir = {out}/unused
{extra}
"""


def _crossval(*args) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue()


@pytest.mark.slow
def test_a_two_stage_recipe_is_cross_validated_by_case_and_resumes(phantom_folder, tmp_path):
    stage1, stage2 = tmp_path / "stage1.ini", tmp_path / "stage2.ini"
    stage1.write_text(RECIPE.format(data=phantom_folder, out=tmp_path, extra=""))
    stage2.write_text(RECIPE.format(data=phantom_folder, out=tmp_path, extra=f"initial_model = {tmp_path}/stage1.pt"))
    output = tmp_path / "cv"
    code, printed = _crossval("crossval", stage1, stage2, "--folds", 3, "--output", output)
    assert code == 0
    summary = json.loads((output / "summary.json").read_text())
    held_out = [case for fold in summary["per_fold"] for case in fold["cases"]]
    assert sorted(held_out) == sorted(p.name.split(".")[0] for p in (phantom_folder / "moving_images").iterdir())
    assert len(held_out) == len(set(held_out)) == summary["n_pairs"] == 6
    for fold in range(3):  # stage 2 of a fold fine-tunes that fold's stage 1, never another fold's model
        trained = train_config_from_ini(output / f"fold{fold}" / "stage1" / "config.ini")
        assert trained.initial_model == str(output / f"fold{fold}" / "stage0" / "model.pt")
        training_log = (output / f"fold{fold}" / "stage0" / "metrics.csv").exists()
        assert training_log or (output / f"fold{fold}" / "stage0" / "model.pt").is_file()
    rows = (output / "per_case.csv").read_text().splitlines()
    assert rows[0] == "case,fold,dice_before,dice_after,tre_mm_before,tre_mm_after,folding" and len(rows) == 7
    assert "pooled over 6 held-out pairs: median gland Dice" in printed
    assert 0 <= summary["gland_dice_median"] <= 1 and summary["tre_mm_median"] >= 0

    errors = io.StringIO()
    with redirect_stderr(errors):
        assert cli.main(["crossval", str(stage1), str(stage2), "--output", str(output)]) == 2
    assert f"--output {output}: holds a cross-validation already; --resume continues it" in errors.getvalue()
    code, printed = _crossval("crossval", stage1, stage2, "--folds", 3, "--output", output, "--resume")
    assert code == 0 and printed.count("finished earlier") == 6, "finished stages are not trained again"
    again = json.loads((output / "summary.json").read_text())
    assert (
        again["gland_dice_median"] == summary["gland_dice_median"]
        and again["tre_mm_median"] == summary["tre_mm_median"]
    )


@pytest.mark.slow
def test_a_glands_recipe_trains_a_gland_model_per_fold_and_scores_the_held_out_pairs(phantom_folder, tmp_path):
    from LabelRegLib.core.config import GlandSettings
    from LabelRegLib.evaluation.crossval import CrossValidation
    from LabelRegLib.nets.model_file import read_model_header

    recipe = tmp_path / "recipe.ini"
    recipe.write_text(RECIPE.format(data=phantom_folder, out=tmp_path, extra="initial_alignment = glands"))
    tiny = GlandSettings(steps=2, num_channel_initial=2, samples_per_step=2, phantom_pairs=0)
    crossval = CrossValidation(
        [train_config_from_ini(recipe)], 3, tmp_path / "cv", gland_settings=tiny, log=lambda *_: None
    )
    summary = crossval.run("cpu")

    for fold, held_out in enumerate(crossval.folds):
        trained = train_config_from_ini(tmp_path / "cv" / f"fold{fold}" / "stage0" / "config.ini")
        assert trained.gland_model == str(crossval.gland_model(fold)), "each fold aligns with its own gland model"
        header = read_model_header(crossval.gland_model(fold))
        held_out_names = {crossval.cases[i].name for i in held_out}
        assert not held_out_names & set(header["training"]["cases"]), "a gland model never sees its held-out cases"
    columns = (tmp_path / "cv" / "per_case.csv").read_text().splitlines()[0].split(",")
    assert {"quality_dice", "quality_centroid_mm", "gland_dice_us", "gland_centroid_mm_mr"} <= set(columns)
    assert 0.0 <= summary["quality"]["dice_threshold"] <= 1.0
    assert "spearman_quality_dice_vs_tre" in summary["quality"]
    # the two warnings measured on the held-out rows: the fields' spread per landmark, the self-check as a detector
    assert "spread_mm" in (tmp_path / "cv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert summary["uncertainty"]["n_landmarks"] > 0 and summary["uncertainty"]["spread_mm_median"] >= 0
    assert set(summary["uncertainty"]["spread_threshold_mm_per_fold"]) == {"0", "1", "2"}
    assert {"share_of_failed_flagged", "share_of_others_flagged"} <= set(summary["quality"]["detector"])

    # another cross-validation on the same split uses these fold gland models instead of training its own
    other = tmp_path / "cv-other"
    code, printed = _crossval(
        "crossval", recipe, "--folds", 3, "--output", other, "--gland-models-from", tmp_path / "cv", "--mirror", "j"
    )
    assert code == 0 and printed.count("glands: finished earlier") == 3 and not list(other.glob("fold*/glands"))
    assert "as a failure detector: flags" in printed and "fields' spread at" in printed


def test_gland_models_taken_from_another_folder_must_be_finished_there(phantom_folder, tmp_path):
    from LabelRegLib.evaluation.crossval import CrossValidation

    recipe = tmp_path / "recipe.ini"
    recipe.write_text(RECIPE.format(data=phantom_folder, out=tmp_path, extra=""))
    crossval = CrossValidation(
        [train_config_from_ini(recipe)], 3, tmp_path / "cv", gland_models_from=tmp_path / "none", glands=True
    )
    assert crossval.gland_model(1) == tmp_path / "none" / "fold1" / "glands" / "model.pt"
    with pytest.raises(InputError, match="holds no finished gland model of fold 0"):
        crossval.run("cpu")


@pytest.mark.slow
def test_folds_run_one_by_one_then_pool_without_training_again(phantom_folder, tmp_path):
    """``--fold K`` trains and evaluates one fold (one process per fold, in parallel); a run without it pools."""
    recipe = tmp_path / "recipe.ini"
    recipe.write_text(RECIPE.format(data=phantom_folder, out=tmp_path, extra=""))
    output = tmp_path / "cv"
    code, printed = _crossval("crossval", recipe, "--folds", 3, "--output", output, "--fold", 1)
    assert code == 0 and "run again without --fold to pool" in printed
    assert (output / "fold1" / "held_out" / "metrics.csv").is_file() and not (output / "fold0").exists()
    assert not (output / "summary.json").exists(), "one fold is not the estimate"
    code, _ = _crossval("crossval", recipe, "--folds", 3, "--output", output, "--fold", 0, "--fold", 2)
    assert code == 0
    code, printed = _crossval("crossval", recipe, "--folds", 3, "--output", output, "--resume")
    assert code == 0 and printed.count("finished earlier") == 3
    assert json.loads((output / "summary.json").read_text())["n_pairs"] == 6
    errors = io.StringIO()
    with redirect_stderr(errors):
        assert cli.main(["crossval", str(recipe), "--output", str(output), "--fold", "3"]) == 2
    assert "--fold: 3: the folds are 0 to 2" in errors.getvalue()
